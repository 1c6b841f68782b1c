//! `ring.h`: the shared ring page that `DEFINE_RING_TYPES` declares, for the
//! two protocols that use it (displif and sndif).

use super::{c_struct, c_union, defines, push_type_entries, LayoutValue};
use crate::abi::displif::{xendispl_req, xendispl_resp};
use crate::abi::sndif::{xensnd_req, xensnd_resp};

/// `RING_IDX`
pub type RING_IDX = u32;
/// `grant_ref_t` (v1 grant tables: a 32-bit index).
pub type grant_ref_t = u32;

/// Ring protocol pages are 4 KiB whatever the OS page size (`XEN_PAGE_SHIFT`).
pub const XEN_PAGE_SHIFT: u32 = 12;
pub const XEN_PAGE_SIZE: usize = 1 << XEN_PAGE_SHIFT;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct sring_pvt_netif {
    pub smartpoll_active: u8,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct sring_pvt_tapif_user {
    pub msg: u8,
}

/// The anonymous `pvt` union of every shared ring.
#[repr(C)]
#[derive(Clone, Copy)]
pub union sring_pvt {
    pub netif: sring_pvt_netif,
    pub tapif_user: sring_pvt_tapif_user,
    pub pvt_pad: [u8; 4],
}

c_struct!(sring_pvt_netif, "", { smartpoll_active });
c_struct!(sring_pvt_tapif_user, "", { msg });
c_union!(sring_pvt, "", {
    netif: sring_pvt_netif => inline,
    tapif_user: sring_pvt_tapif_user => inline,
    pvt_pad: [u8; 4],
});

/// Expands to the four types `DEFINE_RING_TYPES(name, req, rsp)` declares.
macro_rules! define_ring_types {
    ($entry:ident, $sring:ident, $front:ident, $back:ident, $name:literal, $req:ty, $rsp:ty) => {
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub union $entry {
            pub req: $req,
            pub rsp: $rsp,
        }

        #[repr(C)]
        pub struct $sring {
            pub req_prod: RING_IDX,
            pub req_event: RING_IDX,
            pub rsp_prod: RING_IDX,
            pub rsp_event: RING_IDX,
            pub pvt: sring_pvt,
            pub __pad: [u8; 44],
            pub ring: [$entry; 1],
        }

        #[repr(C)]
        pub struct $front {
            pub req_prod_pvt: RING_IDX,
            pub rsp_cons: RING_IDX,
            pub nr_ents: core::ffi::c_uint,
            pub sring: *mut $sring,
        }

        #[repr(C)]
        pub struct $back {
            pub rsp_prod_pvt: RING_IDX,
            pub req_cons: RING_IDX,
            pub nr_ents: core::ffi::c_uint,
            pub sring: *mut $sring,
        }

        c_union!($entry, concat!("union ", $name, "_sring_entry"), { req: $req, rsp: $rsp });
        c_struct!($sring, concat!("struct ", $name, "_sring"), {
            req_prod, req_event, rsp_prod, rsp_event, pvt => sring_pvt, __pad, ring,
        });
        c_struct!($front, concat!("struct ", $name, "_front_ring"), {
            req_prod_pvt, rsp_cons, nr_ents, sring,
        });
        c_struct!($back, concat!("struct ", $name, "_back_ring"), {
            rsp_prod_pvt, req_cons, nr_ents, sring,
        });
    };
}

define_ring_types!(
    xen_displif_sring_entry,
    xen_displif_sring,
    xen_displif_front_ring,
    xen_displif_back_ring,
    "xen_displif",
    xendispl_req,
    xendispl_resp
);
define_ring_types!(
    xen_sndif_sring_entry,
    xen_sndif_sring,
    xen_sndif_front_ring,
    xen_sndif_back_ring,
    "xen_sndif",
    xensnd_req,
    xensnd_resp
);

/// `__RD32`: round a 32-bit value down to a power of two (0 stays 0).
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// `__CONST_RING_SIZE(name, size)`: how many entries fit after the header,
/// rounded down to a power of two so indices can be masked.
pub const fn const_ring_size(ring_offset: usize, entry_size: usize, area: usize) -> u32 {
    if area < ring_offset || entry_size == 0 {
        return 0;
    }
    let n = (area - ring_offset) / entry_size;
    let n = if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    };
    round_down_pow2(n)
}

pub(crate) fn push_entries(out: &mut Vec<(String, LayoutValue)>) {
    push_type_entries::<xen_displif_sring_entry>(out);
    push_type_entries::<xen_displif_sring>(out);
    push_type_entries::<xen_displif_front_ring>(out);
    push_type_entries::<xen_displif_back_ring>(out);
    push_type_entries::<xen_sndif_sring_entry>(out);
    push_type_entries::<xen_sndif_sring>(out);
    push_type_entries::<xen_sndif_front_ring>(out);
    push_type_entries::<xen_sndif_back_ring>(out);
    out.push((
        "ring_size xen_displif".to_string(),
        crate::ring::RingLayout::DISPLIF.nr_ents().into(),
    ));
    out.push((
        "ring_size xen_sndif".to_string(),
        crate::ring::RingLayout::SNDIF.nr_ents().into(),
    ));
    defines!(out, XEN_PAGE_SHIFT);
}
