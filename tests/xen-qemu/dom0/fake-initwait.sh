#!/bin/sh
# Stand-in backend for proving the environment without the gateway (check.py --fake-backend):
# does only a backend's first step, moving each new vdispl/vsnd/vkbd backend directory from
# Initialising (1) to InitWait (2), which is what `xl create` waits 10 s for. The frontends
# then publish their rings and stop in Initialised (3).
xenstore-watch /local/domain/0/backend | while read -r path token; do
  case "$path" in
    /local/domain/0/backend/vdispl/*/*/state|/local/domain/0/backend/vsnd/*/*/state|/local/domain/0/backend/vkbd/*/*/state)
      if [ "$(xenstore-read "$path" 2>/dev/null)" = 1 ]; then
        xenstore-write "$path" 2 && echo "fake-initwait: $path 1 -> 2" >> /var/log/xen/fake-initwait.log
      fi ;;
  esac
done
