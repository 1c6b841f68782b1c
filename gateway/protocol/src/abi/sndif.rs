//! `sndif.h` (protocol version 2).

use super::ring::grant_ref_t;
use super::{c_struct, c_union, defines, push_type_entries, LayoutValue};

pub const XENSND_PROTOCOL_VERSION: u32 = 2;

pub const XENSND_PCM_FORMAT_S8: u8 = 0;
pub const XENSND_PCM_FORMAT_U8: u8 = 1;
pub const XENSND_PCM_FORMAT_S16_LE: u8 = 2;
pub const XENSND_PCM_FORMAT_S16_BE: u8 = 3;
pub const XENSND_PCM_FORMAT_U16_LE: u8 = 4;
pub const XENSND_PCM_FORMAT_U16_BE: u8 = 5;
pub const XENSND_PCM_FORMAT_S24_LE: u8 = 6;
pub const XENSND_PCM_FORMAT_S24_BE: u8 = 7;
pub const XENSND_PCM_FORMAT_U24_LE: u8 = 8;
pub const XENSND_PCM_FORMAT_U24_BE: u8 = 9;
pub const XENSND_PCM_FORMAT_S32_LE: u8 = 10;
pub const XENSND_PCM_FORMAT_S32_BE: u8 = 11;
pub const XENSND_PCM_FORMAT_U32_LE: u8 = 12;
pub const XENSND_PCM_FORMAT_U32_BE: u8 = 13;
pub const XENSND_PCM_FORMAT_F32_LE: u8 = 14;
pub const XENSND_PCM_FORMAT_F32_BE: u8 = 15;
pub const XENSND_PCM_FORMAT_F64_LE: u8 = 16;
pub const XENSND_PCM_FORMAT_F64_BE: u8 = 17;
pub const XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE: u8 = 18;
pub const XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE: u8 = 19;
pub const XENSND_PCM_FORMAT_MU_LAW: u8 = 20;
pub const XENSND_PCM_FORMAT_A_LAW: u8 = 21;
pub const XENSND_PCM_FORMAT_IMA_ADPCM: u8 = 22;
pub const XENSND_PCM_FORMAT_MPEG: u8 = 23;
pub const XENSND_PCM_FORMAT_GSM: u8 = 24;

pub const XENSND_OP_OPEN: u8 = 0;
pub const XENSND_OP_CLOSE: u8 = 1;
pub const XENSND_OP_READ: u8 = 2;
pub const XENSND_OP_WRITE: u8 = 3;
pub const XENSND_OP_SET_VOLUME: u8 = 4;
pub const XENSND_OP_GET_VOLUME: u8 = 5;
pub const XENSND_OP_MUTE: u8 = 6;
pub const XENSND_OP_UNMUTE: u8 = 7;
pub const XENSND_OP_TRIGGER: u8 = 8;
pub const XENSND_OP_HW_PARAM_QUERY: u8 = 9;

pub const XENSND_OP_TRIGGER_START: u8 = 0;
pub const XENSND_OP_TRIGGER_PAUSE: u8 = 1;
pub const XENSND_OP_TRIGGER_STOP: u8 = 2;
pub const XENSND_OP_TRIGGER_RESUME: u8 = 3;

pub const XENSND_EVT_CUR_POS: u8 = 0;

pub const XENSND_DRIVER_NAME: &str = "vsnd";
pub const XENSND_LIST_SEPARATOR: &str = ",";
pub const XENSND_FIELD_BE_VERSIONS: &str = "versions";
pub const XENSND_FIELD_FE_VERSION: &str = "version";
pub const XENSND_FIELD_VCARD_SHORT_NAME: &str = "short-name";
pub const XENSND_FIELD_VCARD_LONG_NAME: &str = "long-name";
pub const XENSND_FIELD_RING_REF: &str = "ring-ref";
pub const XENSND_FIELD_EVT_CHNL: &str = "event-channel";
pub const XENSND_FIELD_EVT_RING_REF: &str = "evt-ring-ref";
pub const XENSND_FIELD_EVT_EVT_CHNL: &str = "evt-event-channel";
pub const XENSND_FIELD_DEVICE_NAME: &str = "name";
pub const XENSND_FIELD_TYPE: &str = "type";
pub const XENSND_FIELD_STREAM_UNIQUE_ID: &str = "unique-id";
pub const XENSND_FIELD_CHANNELS_MIN: &str = "channels-min";
pub const XENSND_FIELD_CHANNELS_MAX: &str = "channels-max";
pub const XENSND_FIELD_SAMPLE_RATES: &str = "sample-rates";
pub const XENSND_FIELD_SAMPLE_FORMATS: &str = "sample-formats";
pub const XENSND_FIELD_BUFFER_SIZE: &str = "buffer-size";

pub const XENSND_STREAM_TYPE_PLAYBACK: &str = "p";
pub const XENSND_STREAM_TYPE_CAPTURE: &str = "c";
pub const XENSND_SAMPLE_RATE_MAX_LEN: usize = 11;
pub const XENSND_SAMPLE_FORMAT_MAX_LEN: usize = 24;

pub const XENSND_PCM_FORMAT_S8_STR: &str = "s8";
pub const XENSND_PCM_FORMAT_U8_STR: &str = "u8";
pub const XENSND_PCM_FORMAT_S16_LE_STR: &str = "s16_le";
pub const XENSND_PCM_FORMAT_S16_BE_STR: &str = "s16_be";
pub const XENSND_PCM_FORMAT_U16_LE_STR: &str = "u16_le";
pub const XENSND_PCM_FORMAT_U16_BE_STR: &str = "u16_be";
pub const XENSND_PCM_FORMAT_S24_LE_STR: &str = "s24_le";
pub const XENSND_PCM_FORMAT_S24_BE_STR: &str = "s24_be";
pub const XENSND_PCM_FORMAT_U24_LE_STR: &str = "u24_le";
pub const XENSND_PCM_FORMAT_U24_BE_STR: &str = "u24_be";
pub const XENSND_PCM_FORMAT_S32_LE_STR: &str = "s32_le";
pub const XENSND_PCM_FORMAT_S32_BE_STR: &str = "s32_be";
pub const XENSND_PCM_FORMAT_U32_LE_STR: &str = "u32_le";
pub const XENSND_PCM_FORMAT_U32_BE_STR: &str = "u32_be";
pub const XENSND_PCM_FORMAT_F32_LE_STR: &str = "float_le";
pub const XENSND_PCM_FORMAT_F32_BE_STR: &str = "float_be";
pub const XENSND_PCM_FORMAT_F64_LE_STR: &str = "float64_le";
pub const XENSND_PCM_FORMAT_F64_BE_STR: &str = "float64_be";
pub const XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE_STR: &str = "iec958_subframe_le";
pub const XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE_STR: &str = "iec958_subframe_be";
pub const XENSND_PCM_FORMAT_MU_LAW_STR: &str = "mu_law";
pub const XENSND_PCM_FORMAT_A_LAW_STR: &str = "a_law";
pub const XENSND_PCM_FORMAT_IMA_ADPCM_STR: &str = "ima_adpcm";
pub const XENSND_PCM_FORMAT_MPEG_STR: &str = "mpeg";
pub const XENSND_PCM_FORMAT_GSM_STR: &str = "gsm";

pub const XENSND_EVENT_PAGE_SIZE: usize = 4096;
pub const XENSND_IN_RING_OFFS: usize = core::mem::size_of::<xensnd_event_page>();
pub const XENSND_IN_RING_SIZE: usize = XENSND_EVENT_PAGE_SIZE - XENSND_IN_RING_OFFS;
pub const XENSND_IN_RING_LEN: usize = XENSND_IN_RING_SIZE / core::mem::size_of::<xensnd_evt>();

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_open_req {
    pub pcm_rate: u32,
    pub pcm_format: u8,
    pub pcm_channels: u8,
    pub reserved: u16,
    pub buffer_sz: u32,
    pub gref_directory: grant_ref_t,
    pub period_sz: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_page_directory {
    pub gref_dir_next_page: grant_ref_t,
    pub gref: [grant_ref_t; 1],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_rw_req {
    pub offset: u32,
    pub length: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_trigger_req {
    pub r#type: u8,
}

/// The anonymous `{ min, max }` interval of `struct xensnd_query_hw_param`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_interval {
    pub min: u32,
    pub max: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_query_hw_param {
    pub formats: u64,
    pub rates: xensnd_interval,
    pub channels: xensnd_interval,
    pub buffer: xensnd_interval,
    pub period: xensnd_interval,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_cur_pos_evt {
    pub position: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xensnd_req_op {
    pub open: xensnd_open_req,
    pub rw: xensnd_rw_req,
    pub trigger: xensnd_trigger_req,
    pub hw_param: xensnd_query_hw_param,
    pub reserved: [u8; 56],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_req {
    pub id: u16,
    pub operation: u8,
    pub reserved: [u8; 5],
    pub op: xensnd_req_op,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xensnd_resp_resp {
    pub hw_param: xensnd_query_hw_param,
    pub reserved1: [u8; 56],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_resp {
    pub id: u16,
    pub operation: u8,
    pub reserved: u8,
    pub status: i32,
    pub resp: xensnd_resp_resp,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xensnd_evt_op {
    pub cur_pos: xensnd_cur_pos_evt,
    pub reserved: [u8; 56],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_evt {
    pub id: u16,
    pub r#type: u8,
    pub reserved: [u8; 5],
    pub op: xensnd_evt_op,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xensnd_event_page {
    pub in_cons: u32,
    pub in_prod: u32,
    pub reserved: [u8; 56],
}

c_struct!(xensnd_open_req, "struct xensnd_open_req", {
    pcm_rate, pcm_format, pcm_channels, reserved, buffer_sz, gref_directory, period_sz,
});
c_struct!(xensnd_page_directory, "struct xensnd_page_directory", { gref_dir_next_page, gref });
c_struct!(xensnd_rw_req, "struct xensnd_rw_req", { offset, length });
c_struct!(xensnd_trigger_req, "struct xensnd_trigger_req", { r#type });
c_struct!(xensnd_interval, "", { min, max });
c_struct!(xensnd_query_hw_param, "struct xensnd_query_hw_param", {
    formats,
    rates => xensnd_interval,
    channels => xensnd_interval,
    buffer => xensnd_interval,
    period => xensnd_interval,
});
c_struct!(xensnd_cur_pos_evt, "struct xensnd_cur_pos_evt", {
    position
});
c_union!(xensnd_req_op, "", {
    open: xensnd_open_req,
    rw: xensnd_rw_req,
    trigger: xensnd_trigger_req,
    hw_param: xensnd_query_hw_param,
    reserved: [u8; 56],
});
c_struct!(xensnd_req, "struct xensnd_req", { id, operation, reserved, op => xensnd_req_op });
c_union!(xensnd_resp_resp, "", { hw_param: xensnd_query_hw_param, reserved1: [u8; 56] });
c_struct!(xensnd_resp, "struct xensnd_resp", {
    id, operation, reserved, status, resp => xensnd_resp_resp,
});
c_union!(xensnd_evt_op, "", { cur_pos: xensnd_cur_pos_evt, reserved: [u8; 56] });
c_struct!(xensnd_evt, "struct xensnd_evt", { id, r#type, reserved, op => xensnd_evt_op });
c_struct!(xensnd_event_page, "struct xensnd_event_page", { in_cons, in_prod, reserved });

pub(crate) fn push_entries(out: &mut Vec<(String, LayoutValue)>) {
    push_type_entries::<xensnd_open_req>(out);
    push_type_entries::<xensnd_page_directory>(out);
    push_type_entries::<xensnd_rw_req>(out);
    push_type_entries::<xensnd_trigger_req>(out);
    push_type_entries::<xensnd_query_hw_param>(out);
    push_type_entries::<xensnd_cur_pos_evt>(out);
    push_type_entries::<xensnd_req>(out);
    push_type_entries::<xensnd_resp>(out);
    push_type_entries::<xensnd_evt>(out);
    push_type_entries::<xensnd_event_page>(out);
    defines!(
        out,
        XENSND_PROTOCOL_VERSION,
        XENSND_PCM_FORMAT_S8,
        XENSND_PCM_FORMAT_U8,
        XENSND_PCM_FORMAT_S16_LE,
        XENSND_PCM_FORMAT_S16_BE,
        XENSND_PCM_FORMAT_U16_LE,
        XENSND_PCM_FORMAT_U16_BE,
        XENSND_PCM_FORMAT_S24_LE,
        XENSND_PCM_FORMAT_S24_BE,
        XENSND_PCM_FORMAT_U24_LE,
        XENSND_PCM_FORMAT_U24_BE,
        XENSND_PCM_FORMAT_S32_LE,
        XENSND_PCM_FORMAT_S32_BE,
        XENSND_PCM_FORMAT_U32_LE,
        XENSND_PCM_FORMAT_U32_BE,
        XENSND_PCM_FORMAT_F32_LE,
        XENSND_PCM_FORMAT_F32_BE,
        XENSND_PCM_FORMAT_F64_LE,
        XENSND_PCM_FORMAT_F64_BE,
        XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE,
        XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE,
        XENSND_PCM_FORMAT_MU_LAW,
        XENSND_PCM_FORMAT_A_LAW,
        XENSND_PCM_FORMAT_IMA_ADPCM,
        XENSND_PCM_FORMAT_MPEG,
        XENSND_PCM_FORMAT_GSM,
        XENSND_OP_OPEN,
        XENSND_OP_CLOSE,
        XENSND_OP_READ,
        XENSND_OP_WRITE,
        XENSND_OP_SET_VOLUME,
        XENSND_OP_GET_VOLUME,
        XENSND_OP_MUTE,
        XENSND_OP_UNMUTE,
        XENSND_OP_TRIGGER,
        XENSND_OP_HW_PARAM_QUERY,
        XENSND_OP_TRIGGER_START,
        XENSND_OP_TRIGGER_PAUSE,
        XENSND_OP_TRIGGER_STOP,
        XENSND_OP_TRIGGER_RESUME,
        XENSND_EVT_CUR_POS,
        XENSND_DRIVER_NAME,
        XENSND_LIST_SEPARATOR,
        XENSND_FIELD_BE_VERSIONS,
        XENSND_FIELD_FE_VERSION,
        XENSND_FIELD_VCARD_SHORT_NAME,
        XENSND_FIELD_VCARD_LONG_NAME,
        XENSND_FIELD_RING_REF,
        XENSND_FIELD_EVT_CHNL,
        XENSND_FIELD_EVT_RING_REF,
        XENSND_FIELD_EVT_EVT_CHNL,
        XENSND_FIELD_DEVICE_NAME,
        XENSND_FIELD_TYPE,
        XENSND_FIELD_STREAM_UNIQUE_ID,
        XENSND_FIELD_CHANNELS_MIN,
        XENSND_FIELD_CHANNELS_MAX,
        XENSND_FIELD_SAMPLE_RATES,
        XENSND_FIELD_SAMPLE_FORMATS,
        XENSND_FIELD_BUFFER_SIZE,
        XENSND_STREAM_TYPE_PLAYBACK,
        XENSND_STREAM_TYPE_CAPTURE,
        XENSND_SAMPLE_RATE_MAX_LEN,
        XENSND_SAMPLE_FORMAT_MAX_LEN,
        XENSND_PCM_FORMAT_S8_STR,
        XENSND_PCM_FORMAT_U8_STR,
        XENSND_PCM_FORMAT_S16_LE_STR,
        XENSND_PCM_FORMAT_S16_BE_STR,
        XENSND_PCM_FORMAT_U16_LE_STR,
        XENSND_PCM_FORMAT_U16_BE_STR,
        XENSND_PCM_FORMAT_S24_LE_STR,
        XENSND_PCM_FORMAT_S24_BE_STR,
        XENSND_PCM_FORMAT_U24_LE_STR,
        XENSND_PCM_FORMAT_U24_BE_STR,
        XENSND_PCM_FORMAT_S32_LE_STR,
        XENSND_PCM_FORMAT_S32_BE_STR,
        XENSND_PCM_FORMAT_U32_LE_STR,
        XENSND_PCM_FORMAT_U32_BE_STR,
        XENSND_PCM_FORMAT_F32_LE_STR,
        XENSND_PCM_FORMAT_F32_BE_STR,
        XENSND_PCM_FORMAT_F64_LE_STR,
        XENSND_PCM_FORMAT_F64_BE_STR,
        XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE_STR,
        XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE_STR,
        XENSND_PCM_FORMAT_MU_LAW_STR,
        XENSND_PCM_FORMAT_A_LAW_STR,
        XENSND_PCM_FORMAT_IMA_ADPCM_STR,
        XENSND_PCM_FORMAT_MPEG_STR,
        XENSND_PCM_FORMAT_GSM_STR,
        XENSND_EVENT_PAGE_SIZE,
        XENSND_IN_RING_OFFS,
        XENSND_IN_RING_SIZE,
        XENSND_IN_RING_LEN,
    );
}
