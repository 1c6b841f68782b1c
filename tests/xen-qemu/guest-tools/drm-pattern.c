/* drm-pattern: put a known test pattern on the first connected connector of a DRM
 * device (the guest's xen-drm-front), with a dumb buffer and the legacy KMS ioctls,
 * then keep it there (a DRM framebuffer dies with the file that made it) and mark it
 * dirty once a second so every damage/flip path sees it again.
 *
 * usage: drm-pattern [SEED] [/dev/dri/cardN]     (runs until killed)
 *
 * The pattern, for pixel (x, y) of a W x H mode and SEED s (0..255), as XRGB8888:
 *   r = (x * 255 / (W - 1)) ^ s
 *   g = (y * 255 / (H - 1))
 *   b = ((x / 32 + y / 32) & 1) ? 0xff : 0x20
 * tests/xen-qemu/check.py computes the same and compares the gateway's snapshot.
 * Static, no libdrm: only the kernel's uapi headers (drm.h, drm_mode.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <drm.h>
#include <drm_mode.h>

static int fd;

static void die(const char *what) {
    fprintf(stderr, "drm-pattern: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int xioctl(unsigned long req, void *arg) {
    int r;
    do r = ioctl(fd, req, arg); while (r == -1 && (errno == EINTR || errno == EAGAIN));
    return r;
}

int main(int argc, char **argv) {
    unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) & 0xff : 0;
    const char *dev = argc > 2 ? argv[2] : "/dev/dri/card0";
    fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) die(dev);

    struct drm_mode_card_res res = {0};
    if (xioctl(DRM_IOCTL_MODE_GETRESOURCES, &res)) die("GETRESOURCES");
    uint32_t conns[16], crtcs[16], encs[16], fbs[16];
    if (res.count_connectors > 16 || res.count_crtcs > 16 || res.count_encoders > 16) {
        fprintf(stderr, "drm-pattern: too many objects\n");
        return 1;
    }
    res.count_fbs = res.count_fbs > 16 ? 16 : res.count_fbs;
    res.connector_id_ptr = (uintptr_t)conns;
    res.crtc_id_ptr = (uintptr_t)crtcs;
    res.encoder_id_ptr = (uintptr_t)encs;
    res.fb_id_ptr = (uintptr_t)fbs;
    if (xioctl(DRM_IOCTL_MODE_GETRESOURCES, &res)) die("GETRESOURCES (2)");

    struct drm_mode_modeinfo mode;
    uint32_t conn_id = 0, crtc_id = 0;
    for (unsigned i = 0; i < res.count_connectors && !conn_id; i++) {
        struct drm_mode_get_connector c = {.connector_id = conns[i]};
        if (xioctl(DRM_IOCTL_MODE_GETCONNECTOR, &c)) die("GETCONNECTOR");
        if (c.connection != 1 || c.count_modes == 0) continue;   /* 1 = connected */
        struct drm_mode_modeinfo modes[c.count_modes];
        uint32_t cencs[c.count_encoders ? c.count_encoders : 1];
        uint32_t props[c.count_props ? c.count_props : 1];
        uint64_t pvals[c.count_props ? c.count_props : 1];
        c.modes_ptr = (uintptr_t)modes;
        c.encoders_ptr = (uintptr_t)cencs;
        c.props_ptr = (uintptr_t)props;
        c.prop_values_ptr = (uintptr_t)pvals;
        if (xioctl(DRM_IOCTL_MODE_GETCONNECTOR, &c)) die("GETCONNECTOR (2)");
        mode = modes[0];
        conn_id = conns[i];
        crtc_id = crtcs[0];
        if (c.encoder_id) {
            struct drm_mode_get_encoder e = {.encoder_id = c.encoder_id};
            if (!xioctl(DRM_IOCTL_MODE_GETENCODER, &e) && e.crtc_id) crtc_id = e.crtc_id;
        }
    }
    if (!conn_id) {
        fprintf(stderr, "drm-pattern: no connected connector with a mode on %s\n", dev);
        return 1;
    }
    unsigned w = mode.hdisplay, h = mode.vdisplay;

    struct drm_mode_create_dumb cd = {.width = w, .height = h, .bpp = 32};
    if (xioctl(DRM_IOCTL_MODE_CREATE_DUMB, &cd)) die("CREATE_DUMB");
    struct drm_mode_map_dumb md = {.handle = cd.handle};
    if (xioctl(DRM_IOCTL_MODE_MAP_DUMB, &md)) die("MAP_DUMB");
    uint8_t *px = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, md.offset);
    if (px == MAP_FAILED) die("mmap");
    for (unsigned y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(px + (size_t)y * cd.pitch);
        for (unsigned x = 0; x < w; x++) {
            uint32_t r = ((x * 255u) / (w - 1)) ^ seed;
            uint32_t g = (y * 255u) / (h - 1);
            uint32_t b = ((x / 32 + y / 32) & 1) ? 0xff : 0x20;
            row[x] = (r << 16) | (g << 8) | b;
        }
    }

    struct drm_mode_fb_cmd2 fb = {
        .width = w, .height = h,
        .pixel_format = 0x34325258, /* DRM_FORMAT_XRGB8888 'XR24' */
        .handles = {cd.handle}, .pitches = {cd.pitch},
    };
    if (xioctl(DRM_IOCTL_MODE_ADDFB2, &fb)) die("ADDFB2");
    struct drm_mode_crtc crtc = {
        .crtc_id = crtc_id, .fb_id = fb.fb_id,
        .set_connectors_ptr = (uintptr_t)&conn_id, .count_connectors = 1,
        .mode = mode, .mode_valid = 1,
    };
    if (xioctl(DRM_IOCTL_MODE_SETCRTC, &crtc)) die("SETCRTC");
    printf("drm-pattern: seed %u on connector %u crtc %u: %ux%u pitch %u, fb %u\n",
           seed, conn_id, crtc_id, w, h, cd.pitch, fb.fb_id);
    fflush(stdout);

    struct drm_clip_rect all = {0, 0, (unsigned short)w, (unsigned short)h};
    struct drm_mode_fb_dirty_cmd dirty = {
        .fb_id = fb.fb_id, .num_clips = 1, .clips_ptr = (uintptr_t)&all,
    };
    for (;;) {
        sleep(1);
        if (xioctl(DRM_IOCTL_MODE_DIRTYFB, &dirty) && errno != ENOSYS) die("DIRTYFB");
    }
}
