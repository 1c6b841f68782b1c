#!/usr/bin/python3
"""The real-Xen check: boot Xen + dom0 under QEMU, start the gateway in dom0, create a PV
domU with vdispl + vsnd + vkb, and check the gateway against the real Linux frontends.

Run by tests/xen-qemu/run.sh, which builds what this needs (see README.md there):
  $W/boot/          xen, vmlinuz, dom0-initrd.cpio.gz, dom0.img       (images.sh)
  $W/qemuroot/      QEMU 7.2                                          (images.sh)
  $W/share/         pvgate, pvgate.toml: dom0 sees it as /mnt/host (9p); logs/ is written there
  $W/share/token    the control token the checks use (never leaves the host and the VM)
Options: --fake-backend  prove the environment only: a shell stand-in moves the backends
                         to InitWait, nothing connects (no gateway needed)
         --port N        host port forwarded to the gateway (default: a free one)
         --run NAME      log names under $W/logs (default: run)
Exit status 0 when every check passed, 1 when one failed, 2 when the run could not proceed.
"""
import argparse
import asyncio
import ctypes
import ctypes.util
import io
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import pexpect

HERE = os.path.dirname(os.path.abspath(__file__))
W = os.environ.get("XENQEMU_WORK", os.path.expanduser("~/.cache/pvgate-xen-qemu"))
DOM0 = "DOM0# "
DOMU = "DOMU# "
TONE_HZ = 660           # what speaker-test plays in the guest
SEEDS = (0, 77, 150)    # drm-pattern seeds: first boot, after the module reload, after reboot

T0 = time.time()
phases = []             # (name, seconds, status, detail)
console_log = None
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def say(msg):
    line = f"[{time.time() - T0:7.1f}s] {msg}"
    print(line, flush=True)
    if console_log:
        console_log.write(f"\n#### {line}\n")
        console_log.flush()


class Phase:
    """A timed step of the run; records PASS/FAIL/SKIP for the summary."""

    def __init__(self, name):
        self.name, self.detail, self.status = name, "", None

    def __enter__(self):
        self.t = time.time()
        say(f"--> {self.name}")
        return self

    def ok(self, detail=""):
        self.status, self.detail = "PASS", detail

    def fail(self, detail):
        self.status, self.detail = "FAIL", detail

    def skip(self, detail):
        self.status, self.detail = "SKIP", detail

    def __exit__(self, et, ev, tb):
        if et is not None and self.status is None:
            self.status = "FAIL"
            self.detail = f"{et.__name__}: {ev}"[:600]
        if self.status is None:
            self.status = "PASS"
        dt = time.time() - self.t
        phases.append((self.name, dt, self.status, self.detail))
        say(f"<-- {self.name}: {self.status} ({dt:.1f}s) {self.detail}")
        # a failed check goes on to the next one; a lost console or an Abort ends the run
        return et is not None and not issubclass(et, (Abort, pexpect.TIMEOUT, pexpect.EOF, KeyboardInterrupt))


class Abort(Exception):
    """The run cannot go on (the VM is gone, dom0 did not boot ...)."""


# ---------------------------------------------------------------------------------- console
class Console:
    def __init__(self, p):
        self.p = p
        self.n = 0
        self.where = None

    def type(self, line):
        """Type a line into the serial console in small pieces: under TCG, the emulated
        UART drops characters of a long line sent at once."""
        for i in range(0, len(line), 16):
            self.p.send(line[i:i + 16])
            time.sleep(0.03)
        self.p.send("\r")

    def run(self, cmd, timeout=120, check=False):
        """Run a shell command in whichever shell the console is in; return (rc, output)."""
        self.n += 1
        tag = f"END{self.n}X"
        self.type(f"{cmd}; echo __{tag[:3]}''{tag[3:]}__ $?")
        self.p.expect(rf"__{tag}__ (\d+)\r*\n", timeout=timeout)
        out = ANSI.sub("", self.p.before)
        rc = int(self.p.match.group(1))
        # drop the echoed command line
        out = out.split("\n", 1)[1] if "\n" in out else ""
        out = out.replace("\r", "")
        self.p.expect_exact(DOM0 if self.where == "dom0" else DOMU, timeout=30)
        if check and rc != 0:
            raise RuntimeError(f"`{cmd}` exited {rc}: {out.strip()[-400:]}")
        return rc, out

    def sync(self, prompt, timeout=60):
        self.n += 1
        tag = f"SYNC{self.n}X"
        self.type(f"echo __{tag[:4]}''{tag[4:]}__")
        self.p.expect(rf"__{tag}__\r*\n", timeout=timeout)
        self.p.expect_exact(prompt, timeout=timeout)

    def to_dom0(self):
        if self.where == "dom0":
            return
        self.p.sendcontrol("]")
        time.sleep(1)
        self.where = "dom0"
        self.sync(DOM0)

    def to_domu(self, timeout=60):
        if self.where == "domu":
            return
        self.p.sendline("xl console domu")
        time.sleep(2)
        self.where = "domu"
        self.p.sendline("")
        self.p.expect_exact(DOMU, timeout=timeout)
        self.sync(DOMU)


# ---------------------------------------------------------------------------------- host side
class Gateway:
    def __init__(self, port, token):
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.token = token

    def get(self, path, timeout=20):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def healthy(self):
        try:
            return self.get("/healthz", timeout=3).strip() == b"ok"
        except Exception:
            return False

    def require(self, log_path):
        """Abort the run when the gateway is gone: every later check would only time out."""
        if self.healthy():
            return
        tail = ANSI.sub("", open(log_path, errors="replace").read())[-1200:] if os.path.exists(log_path) else ""
        raise Abort(f"the gateway stopped answering /healthz; the end of its log:\n{tail}")

    def guest(self, domid):
        try:
            return json.loads(self.get(f"/api/guests/{domid}"))
        except Exception:
            return None


def pattern_pixel(x, y, w, h, seed):
    r = ((x * 255) // (w - 1)) ^ seed
    g = (y * 255) // (h - 1)
    b = 0xFF if ((x // 32 + y // 32) & 1) else 0x20
    return r, g, b


def compare_snapshot(png, seed):
    """Mismatching pixels (any channel off by more than 2) between the PNG and the pattern."""
    from PIL import Image
    im = Image.open(io.BytesIO(png)).convert("RGB")
    w, h = im.size
    px = im.load()
    bad, first = 0, None
    for y in range(0, h, 3):
        for x in range(0, w, 3):
            want = pattern_pixel(x, y, w, h, seed)
            got = px[x, y]
            if any(abs(a - b) > 2 for a, b in zip(got, want)):
                bad += 1
                if first is None:
                    first = (x, y, got, want)
    return (w, h), bad, first


def wait_snapshot(gw, domid, seed, timeout=60):
    """Poll the snapshot until it shows the pattern with this seed; return a description."""
    deadline = time.time() + timeout
    last = "no snapshot yet"
    while time.time() < deadline:
        try:
            png = gw.get(f"/api/guests/{domid}/displays/0/snapshot.png")
            size, bad, first = compare_snapshot(png, seed)
            if bad == 0:
                open(f"{W}/logs/snapshot-{domid}-{seed}.png", "wb").write(png)
                return True, f"{size[0]}x{size[1]} snapshot matches the seed-{seed} pattern"
            last = f"{size[0]}x{size[1]}, {bad} sampled pixels differ (first at {first})"
            open(f"{W}/logs/snapshot-{domid}-{seed}.png", "wb").write(png)
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {e.read()[:200]!r}"
        except Exception as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(2)
    return False, last


class Session(threading.Thread):
    """The session WebSocket (web/PROTOCOL.md) as a non-browser client: websocket transport,
    audio on; collects Opus packets and sends the input messages queued with send()."""

    def __init__(self, gw, domid):
        super().__init__(daemon=True)
        self.gw, self.domid = gw, domid
        self.welcome = None
        self.audio = []          # (pts_us, opus bytes)
        self.video = 0
        self.errors = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.outq = []
        self.lock = threading.Lock()
        self.exc = None

    def send(self, msg):
        with self.lock:
            self.outq.append(msg)

    def run(self):
        try:
            asyncio.run(self._main())
        except Exception as e:
            self.exc = e
            self.ready.set()

    async def _main(self):
        import websockets
        url = f"ws://127.0.0.1:{self.gw.port}/api/guests/{self.domid}/session"
        async with websockets.connect(url, extra_headers={"Authorization": f"Bearer {self.gw.token}"},
                                      max_size=None, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "hello", "transport": "websocket", "display": 0,
                                      "codecs": ["h264", "vp8"], "audio": True, "mic": False}))
            while not self.stop.is_set():
                with self.lock:
                    q, self.outq = self.outq, []
                for m in q:
                    await ws.send(json.dumps(m))
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.05)
                except asyncio.TimeoutError:
                    continue
                if isinstance(msg, bytes):
                    kind = msg[0]
                    if kind == 2:
                        self.audio.append((int.from_bytes(msg[4:12], "big"), msg[12:]))
                    elif kind == 1:
                        self.video += 1
                else:
                    m = json.loads(msg)
                    if m.get("type") == "welcome":
                        self.welcome = m
                        self.ready.set()
                    elif m.get("type") == "error":
                        self.errors.append(m)
                        if m.get("fatal"):
                            self.ready.set()
                            return


def opus_decode(packets):
    """Decode Opus packets (48 kHz stereo) with the system's libopus; return (left, right)."""
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    lib = ctypes.CDLL(name)
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                ctypes.POINTER(ctypes.c_int16), ctypes.c_int, ctypes.c_int]
    err = ctypes.c_int()
    dec = lib.opus_decoder_create(48000, 2, ctypes.byref(err))
    if err.value != 0:
        raise RuntimeError(f"opus_decoder_create: {err.value}")
    buf = (ctypes.c_int16 * (5760 * 2))()
    left, right = [], []
    for p in packets:
        n = lib.opus_decode(dec, p, len(p), buf, 5760, 0)
        if n < 0:
            raise RuntimeError(f"opus_decode: {n}")
        left.extend(buf[0:2 * n:2])
        right.extend(buf[1:2 * n:2])
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_destroy(dec)
    return left, right


def goertzel(x, f, rate=48000):
    k = 2 * math.cos(2 * math.pi * f / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + k * s1 - s2, s1
    return math.sqrt(max(s1 * s1 + s2 * s2 - k * s1 * s2, 0.0)) / max(len(x), 1)


def tone_frequency(samples, rate=48000):
    """(frequency, rms, purity) of the loud part of `samples`: the frequency from the mean
    period between rising crossings (with hysteresis, so codec noise around zero does not
    count), taken over 20 ms windows louder than rms 500; purity = Goertzel power at that
    frequency over the strongest of 0.5x/1.5x/2x."""
    win = rate // 50
    loud = [i for i in range(0, len(samples) - win, win)
            if math.sqrt(sum(v * v for v in samples[i:i + win]) / win) > 500]
    if len(loud) < 10:
        return None, 0.0, 0.0
    loud_set = set(loud)
    seg = [v for i in loud for v in samples[i:i + win]]
    rms = math.sqrt(sum(v * v for v in seg) / len(seg))
    th = 0.3 * rms
    ups, armed = [], False
    for i, v in enumerate(samples):
        if (i - i % win) not in loud_set:
            armed = False
            continue
        if v < -th:
            armed = True
        elif armed and v > th:
            ups.append(i)
            armed = False
    periods = sorted(b - a for a, b in zip(ups, ups[1:]))
    if len(periods) < 10:
        return None, rms, 0.0
    med = periods[len(periods) // 2]
    near = [p for p in periods if abs(p - med) <= 0.1 * med]
    f = rate / (sum(near) / len(near))
    part = seg[:rate]                                # one second is plenty for Goertzel
    p = goertzel(part, f)
    others = max(goertzel(part, f * m) for m in (0.5, 1.5, 2.0))
    return f, rms, p / max(others, 1e-9)


# ---------------------------------------------------------------------------------- the run
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def qemu_command(port):
    q = f"{W}/qemuroot"
    xen_cmdline = ("console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=768M,max:768M "
                   "dom0_max_vcpus=2 noreboot bootscrub=0")
    dom0_cmdline = "console=hvc0 earlyprintk=xen root=/dev/vda rw rootfstype=ext4"
    return [
        f"{q}/usr/bin/qemu-system-x86_64", "-L", f"{q}/usr/share/qemu", "-L", f"{q}/usr/share/seabios",
        "-machine", "q35,accel=tcg", "-cpu", os.environ.get("XENQEMU_CPU", "max,-smap,-smep,-rdtscp"), "-m", "2048", "-smp", "2",
        "-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", f"{W}/boot/xen", "-append", xen_cmdline,
        "-initrd", f"{W}/boot/vmlinuz {dom0_cmdline},{W}/boot/dom0-initrd.cpio.gz",
        "-drive", f"file={W}/boot/dom0.img,if=none,id=dom0disk,format=raw,cache=unsafe,snapshot=on",
        "-device", "virtio-blk-pci,drive=dom0disk",
        "-fsdev", f"local,id=hostshare,path={W}/share,security_model=none",
        "-device", "virtio-9p-pci,fsdev=hostshare,mount_tag=hostshare",
        # user networking, isolated (restrict=on): only the forwarded gateway port, on loopback
        "-nic", f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:8080",
    ]


def main():
    global console_log
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake-backend", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--run", default="run")
    args = ap.parse_args()
    os.makedirs(f"{W}/logs", exist_ok=True)
    os.makedirs(f"{W}/share/logs", exist_ok=True)
    console_log = open(f"{W}/logs/{args.run}.console", "w")
    port = args.port or free_port()
    token = open(f"{W}/share/token").read().strip() if not args.fake_backend else ""
    gw = Gateway(port, token)
    gwlog = f"{W}/share/logs/pvgate.log"
    if os.path.exists(gwlog):
        os.remove(gwlog)

    cmd = qemu_command(port)
    env = dict(os.environ, LD_LIBRARY_PATH=f"{W}/qemuroot/usr/lib/x86_64-linux-gnu:{W}/qemuroot/lib/x86_64-linux-gnu")
    p = pexpect.spawn(cmd[0], cmd[1:], env=env, encoding="utf-8", codec_errors="replace",
                      timeout=300, logfile=console_log, dimensions=(50, 250))
    c = Console(p)
    gateway_up = False
    domid = None
    try:
        with Phase("boot Xen + dom0 to a shell") as ph:
            p.expect(r"\(XEN\) Xen version", timeout=120)
            i = p.expect([r"root@dom0:~# ", r"Panic on CPU", r"Kernel panic"], timeout=600)
            if i:
                raise Abort("Xen or dom0 crashed while booting (see the console log)")
            c.type("bind 'set enable-bracketed-paste off' 2>/dev/null; export PS1='DOM0''# '")
            p.expect_exact(DOM0)
            c.where = "dom0"
            c.sync(DOM0)
            c.run("stty cols 250 rows 50")
            _, out = c.run("cat /sys/hypervisor/type; ip -4 -o addr show | grep 10.0.2.15 | wc -l; ls /mnt/host")
            if "xen" not in out:
                raise Abort(f"dom0 does not run on Xen: {out!r}")
            ph.ok("dom0 on Xen, host share and network up")

        if args.fake_backend:
            with Phase("stand-in backend (fake-initwait.sh)") as ph:
                c.run("(setsid /root/fake-initwait.sh </dev/null >/dev/null 2>&1 &); sleep 1")
        else:
            with Phase("start the gateway in dom0 (before xl create)") as ph:
                _, out = c.run("ldd /mnt/host/pvgate | grep 'not found'")
                if out.strip():
                    raise Abort(f"the pvgate binary lacks libraries in dom0: {out.strip()} — add their "
                                "Debian packages to ROOT_PKGS in tests/xen-qemu/images.sh")
                c.run("/mnt/host/bin/gw-start")
                deadline = time.time() + 120
                while time.time() < deadline and not gw.healthy():
                    rc, _ = c.run("pidof pvgate >/dev/null")
                    if rc != 0:
                        break
                    time.sleep(2)
                gateway_up = gw.healthy()
                if not gateway_up:
                    tail = open(gwlog, errors="replace").read()[-1500:] if os.path.exists(gwlog) else ""
                    raise Abort(f"the gateway did not come up (GET /healthz through 127.0.0.1:{port}); its log:\n{tail}")
                ph.ok(f"/healthz answers on 127.0.0.1:{port}")

        with Phase("xl create the domU (vdispl, vsnd, vkb) and boot it") as ph:
            p.sendline("xl create -c /root/domu.cfg")
            c.where = "domu"
            i = p.expect([r"DOMU_READY", r"libxl: error", r"Kernel panic", DOM0], timeout=400)
            if i != 0:
                err = ANSI.sub("", p.before[-1500:] + p.after if isinstance(p.after, str) else "")
                c.where = "dom0"
                raise Abort(f"xl create failed: {err.strip()[-1200:]}")
            p.expect_exact(DOMU, timeout=60)
            c.sync(DOMU)

        def frontend_states():
            _, out = c.run("fe-states")
            return {l.split()[1]: (l.split()[2], l.split()[3]) for l in out.splitlines()
                    if l.startswith("FE-STATE") and len(l.split()) >= 4}

        want_fe = "Initialised" if args.fake_backend else "Connected"
        devices = ("vdispl-0", "vsnd-0", "vkbd-0")

        def check_frontends(ph, timeout=60):
            deadline = time.time() + timeout
            while True:
                st = frontend_states()
                bad = {d: st.get(d) for d in devices if (st.get(d) or ("", ""))[1] != want_fe}
                if not bad or time.time() > deadline:
                    break
                time.sleep(2)
            if bad:
                ph.fail(f"frontends not {want_fe}: {bad} (all: {st})")
                return False
            ph.ok(", ".join(f"{d} {st[d][0]} {st[d][1]}" for d in devices))
            return True

        with Phase(f"guest: frontends {want_fe}") as ph:
            check_frontends(ph)

        def backend_states(ph, dom, want):
            """Both sides' xenstore states, read in dom0."""
            c.to_dom0()
            _, out = c.run("/mnt/host/bin/states")
            m = re.search(r"DOMID=(\d+)", out)
            d = int(m.group(1)) if m else None
            st = dict(re.findall(r"ST (\w+) (be=\S* fe=\S*)", out))
            bad = {k: v for k, v in st.items() if v != f"be={want[0]} fe={want[1]}"}
            if bad or len(st) != 3:
                ph.fail(f"domain {d}: {st}")
            else:
                ph.ok(f"domain {d}: " + "; ".join(f"{k} {v}" for k, v in st.items()))
            return d

        with Phase("xenstore: both sides' states") as ph:
            domid = backend_states(ph, None, ("2", "3") if args.fake_backend else ("4", "4"))

        if args.fake_backend:
            return finish(c, gw, gwlog, False)

        c.to_domu()

        def display_check(name, dom, seed):
            gw.require(gwlog)
            with Phase(name) as ph:
                c.run("killall drm-pattern 2>/dev/null; sleep 0.5")
                c.run(f"(drm-pattern {seed} >/tmp/drm.log 2>&1 &); sleep 2; cat /tmp/drm.log")
                ok, detail = wait_snapshot(gw, dom, seed)
                if not ok:
                    _, out = c.run("cat /tmp/drm.log")
                    ph.fail(f"{detail}; guest: {out.strip()[-300:]}")
                else:
                    ph.ok(detail)

        def input_check(name, dom, session=None):
            gw.require(gwlog)
            with Phase(name) as ph:
                c.run("killall evdev-read 2>/dev/null; (evdev-read >/tmp/ev.log 2>&1 &); sleep 1")
                own = session is None
                s = session or Session(gw, dom)
                if own:
                    s.start()
                    s.ready.wait(60)
                if not s.welcome:
                    ph.fail(f"no welcome from the session: {s.errors or s.exc}")
                    return s
                if s.welcome.get("role") != "control":
                    ph.fail(f"session role is {s.welcome.get('role')}, not control")
                    return s
                w, h = s.welcome["display"]["width"], s.welcome["display"]["height"]
                x, y = w // 4, h // 3
                for m in ({"type": "key", "code": 30, "down": True}, {"type": "key", "code": 30, "down": False},
                          {"type": "move", "x": x, "y": y}):
                    s.send(m)
                deadline = time.time() + 30
                while time.time() < deadline:
                    time.sleep(2)
                    _, out = c.run("cat /tmp/ev.log")
                    key = re.search(r"^\S+ 1 30 1$", out, re.M) and re.search(r"^\S+ 1 30 0$", out, re.M)
                    absx = re.search(r"^\S+ 3 0 (\d+)$", out, re.M)
                    if key and absx:
                        break
                devs = re.findall(r"^evdev-read: (\S+) (\S+)$", out, re.M)
                if key and absx:
                    ph.ok(f"KEY_A down/up and an absolute move (x={absx.group(1)}) reached evdev "
                          f"({', '.join(n for _, n in devs)})")
                else:
                    ph.fail(f"guest saw key={bool(key)} abs={bool(absx)}; devices {devs}; events: "
                            f"{out.strip()[-400:]!r}")
                if own:
                    s.stop.set()
                    s.join(10)
            return s

        display_check("display: drm-pattern in the guest = the gateway's snapshot", domid, SEEDS[0])

        with Phase(f"sound: speaker-test {TONE_HZ} Hz in the guest -> the gateway's Opus") as ph:
            s = Session(gw, domid)
            s.start()
            s.ready.wait(60)
            if not s.welcome or not s.welcome.get("audio"):
                ph.fail(f"session without audio: welcome={s.welcome} errors={s.errors} exc={s.exc}")
            else:
                c.run(f"tone {TONE_HZ} >/tmp/tone.log 2>&1 & :")
                _, pcm = c.run("sleep 1; cat /proc/asound/card0/pcm0p/sub0/status")
                rc, out = c.run("wait; tail -n 3 /tmp/tone.log", timeout=120)
                time.sleep(2)
                try:
                    metrics = [l for l in gw.get("/metrics").decode().splitlines()
                               if l.startswith("pvgate_sound_") and 'direction="capture"' not in l
                               and not l.endswith(" 0")]
                except Exception as e:
                    metrics = [f"/metrics: {e}"]
                say("sound metrics: " + "; ".join(metrics))
                say("guest pcm status 1 s in: " + pcm.strip().replace("\n", "; "))
                pk = [a for _, a in s.audio]
                left, right = opus_decode(pk)
                f, rms, purity = tone_frequency(left)
                detail = (f"{len(pk)} Opus packets ({len(left) / 48000:.1f} s); left channel: "
                          + (f"{f:.1f} Hz, rms {rms:.0f}, purity {purity:.0f}x" if f else "no tone"))
                secs = len(left) / 48000
                if f and abs(f - TONE_HZ) < TONE_HZ * 0.02 and purity > 10 and secs > 2 and "error" not in out.lower():
                    ph.ok(detail)
                else:
                    _, dm = c.run("dmesg | grep -iE 'snd|xen|alsa' | tail -n 8")
                    ph.fail(f"{detail}; speaker-test rc={rc}: {out.strip()[-300:]!r}; guest pcm status 1 s in: "
                            f"{pcm.strip()!r}; gateway: {metrics}; guest dmesg: {dm.strip()[-600:]!r}")

        input_check("input: key + pointer through the session WebSocket -> guest evdev", domid, s)
        s.stop.set()

        gw.require(gwlog)
        with Phase("guest: unload the frontends (rmmod drm_xen_front snd_xen_front, unbind the built-in vkbd)") as ph:
            c.run("killall drm-pattern evdev-read 2>/dev/null; sleep 1")
            rc, out = c.run("fe-unload", timeout=120)
            _, st = c.run("fe-states")
            still = [l for l in st.splitlines() if l.startswith("FE-STATE") and " none " not in l]
            if rc != 0 or still:
                ph.fail(f"fe-unload rc={rc} {out.strip()[-300:]!r}; still bound: {still}")
            else:
                ph.ok("; ".join(l[9:] for l in st.splitlines() if l.startswith("FE-STATE")))
        with Phase("guest: load them again -> Connected") as ph:
            c.run("fe-load", timeout=150)
            check_frontends(ph)
        display_check("display after the reload: new pattern in the snapshot", domid, SEEDS[1])
        input_check("input after the reload", domid)
        with Phase("xenstore after the reload") as ph:
            backend_states(ph, domid, ("4", "4"))

        gw.require(gwlog)
        with Phase("reboot the domU -> the gateway serves the new domain") as ph:
            c.to_domu()
            c.type("reboot -f")
            # the console client exits with the old domain
            i = p.expect_exact([DOM0, pexpect.TIMEOUT], timeout=60)
            if i == 0:
                c.where = "dom0"
                c.sync(DOM0)
            else:
                c.to_dom0()
            deadline = time.time() + 300
            new, out = None, ""
            while time.time() < deadline:
                _, out = c.run("/mnt/host/bin/states")
                m = re.search(r"DOMID=(\d+)", out)
                if m and int(m.group(1)) != domid and len(re.findall(r"^ST \w+ be=4 fe=4$", out, re.M)) == 3:
                    new = int(m.group(1))
                    break
                time.sleep(5)
            if new is None:
                ph.fail(f"no new domain with all devices Connected (4/4) on both sides: {out.strip()[-400:]!r}")
            else:
                ph.ok(f"domain {domid} -> {new}: vdispl, vsnd, vkbd Connected on both sides")
                domid = new
        if phases[-1][2] == "PASS":
            c.to_domu(timeout=120)
            display_check("display after the reboot", domid, SEEDS[2])
            input_check("input after the reboot", domid)
        return finish(c, gw, gwlog, True)
    except Abort as e:
        say(f"ABORT: {e}")
        phases.append(("abort", 0.0, "FAIL", str(e)[:1500]))
        return finish(c, gw, gwlog, gateway_up, aborted=True)
    except (pexpect.TIMEOUT, pexpect.EOF) as e:
        last = ANSI.sub("", (p.before or "")[-600:]) if isinstance(p.before, str) else ""
        phases.append(("console", 0.0, "FAIL", f"{type(e).__name__} waiting on the console; last output: {last!r}"))
        return finish(c, gw, gwlog, gateway_up, aborted=True)
    finally:
        if p.isalive():
            p.terminate(force=True)
        summary()


def finish(c, gw, gwlog, gateway_checked, aborted=False):
    if gateway_checked and not aborted:
        with Phase("gateway still running, log without unprovoked errors") as ph:
            c.to_dom0()
            rc, _ = c.run("pidof pvgate >/dev/null")
            log = ANSI.sub("", open(gwlog, errors="replace").read()) if os.path.exists(gwlog) else ""
            errors = [l for l in log.splitlines() if re.search(r"\bERROR\b|panicked", l)]
            warns = [l for l in log.splitlines() if re.search(r"\bWARN\b", l)]
            if rc != 0:
                ph.fail("the gateway process is gone")
            elif errors:
                ph.fail(f"{len(errors)} error lines, first: {errors[0][:300]}")
            else:
                ph.ok(f"alive; 0 errors, {len(warns)} warnings" + (f" (first: {warns[0][:200]})" if warns else ""))
    return 0


def summary():
    print("\n==== tests/xen-qemu summary ====")
    # the host-side steps run.sh timed before this script: "name=seconds;name=seconds"
    for item in filter(None, os.environ.get("XENQEMU_HOST_PHASES", "").split(";")):
        name, _, secs = item.rpartition("=")
        print(f"PASS {float(secs):7.1f}s  {name} (host)")
    for name, dt, st, detail in phases:
        print(f"{st:4} {dt:7.1f}s  {name}" + (f"\n              {detail}" if detail else ""))
    failed = sum(1 for _, _, st, _ in phases if st == "FAIL")
    passed = sum(1 for _, _, st, _ in phases if st == "PASS")
    skipped = sum(1 for _, _, st, _ in phases if st == "SKIP")
    print(f"total {time.time() - T0:.1f}s (console log: {W}/logs/*.console, gateway log: {W}/share/logs/pvgate.log)")
    print(f"xen-qemu: {passed} passed, {failed} failed, {skipped} skipped")


if __name__ == "__main__":
    main()
    sys.exit(1 if any(st == "FAIL" for _, _, st, _ in phases) else 0)
