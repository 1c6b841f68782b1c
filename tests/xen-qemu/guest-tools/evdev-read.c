/* evdev-read: print every input event of the given evdev nodes (default: all
 * /dev/input/event0..15), one line each, flushed:
 *     NAME type code value
 * where NAME is the device's name (EVIOCGNAME) with spaces replaced by '_'.
 * A line "evdev-read: NODE NAME" is printed per device opened. Runs until killed.
 * tests/xen-qemu/check.py reads these lines to see what the gateway injected. */
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct pollfd pf[16];
    char names[16][128];
    int n = 0;
    char path[64];
    for (int i = 0; n < 16 && i < (argc > 1 ? argc - 1 : 16); i++) {
        const char *p = argc > 1 ? argv[i + 1] : (snprintf(path, sizeof path, "/dev/input/event%d", i), path);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (argc > 1) fprintf(stderr, "evdev-read: %s: %s\n", p, strerror(errno));
            continue;
        }
        if (ioctl(fd, EVIOCGNAME(sizeof names[n]), names[n]) < 0) strcpy(names[n], "?");
        names[n][sizeof names[n] - 1] = 0;
        for (char *c = names[n]; *c; c++) if (*c == ' ') *c = '_';
        printf("evdev-read: %s %s\n", p, names[n]);
        pf[n].fd = fd;
        pf[n].events = POLLIN;
        n++;
    }
    fflush(stdout);
    if (!n) {
        fprintf(stderr, "evdev-read: no input device could be opened\n");
        return 1;
    }
    for (;;) {
        if (poll(pf, n, -1) < 0) {
            if (errno == EINTR) continue;
            perror("evdev-read: poll");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
            struct input_event ev[64];
            ssize_t r = read(pf[i].fd, ev, sizeof ev);
            if (r <= 0) {  /* device gone (module unloaded): stop watching it */
                printf("evdev-read: %s gone\n", names[i]);
                pf[i].fd = -1;
                continue;
            }
            for (size_t k = 0; k < (size_t)r / sizeof ev[0]; k++)
                if (ev[k].type != EV_SYN)
                    printf("%s %u %u %d\n", names[i], ev[k].type, ev[k].code, ev[k].value);
            fflush(stdout);
        }
    }
}
