//! Every GGUF entry point on arbitrary bytes: no panic, no abort; the whole-file
//! parse, the header parse and the stream agree; writing what was read and
//! reading it back changes nothing.
//!
//! Input: two control bytes, then the file. Byte 0 places the end of the
//! stream's first chunk; byte 1 sets the size of the chunks after it.
#![no_main]

use edgeproof::gguf::{self, parse_header, Gguf, GgufStream, Header, TensorData};
use edgeproof::Error;
use libfuzzer_sys::fuzz_target;

/// Elements dequantized per input at most, to keep each run short.
const MAX_ELEMENTS: u64 = 1 << 20;
/// The stream reserves the size its header claims (by design), which libFuzzer's
/// malloc limit would report: larger claims skip the stream here, and
/// tests/gguf.rs covers claims too large to allocate.
const MAX_STREAM_RESERVE: u64 = 1 << 24;

/// Header equality that counts a NaN metadata value as equal to itself.
fn same(a: &Header, b: &Header) -> bool {
    let rest = |h: &Header| (h.version, h.tensors.clone(), h.alignment, h.data_offset, h.data_size);
    format!("{:?}", a.metadata.entries()) == format!("{:?}", b.metadata.entries()) && rest(a) == rest(b)
}

fn tensors_of(g: &Gguf) -> Vec<TensorData> {
    g.header
        .tensors
        .iter()
        .map(|i| TensorData {
            name: i.name.clone(),
            dims: i.dims.clone(),
            ty: i.ty,
            data: g.tensor(&i.name).unwrap().data.to_vec(),
        })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let [c0, c1, data @ ..] = input else { return };
    let split = *c0 as usize * data.len() / 255;
    let chunk = 1 + *c1 as usize;

    let header = parse_header(data);
    let whole = Gguf::from_bytes(data.to_vec());
    match (&header, &whole) {
        (Ok(h), Ok(g)) => assert!(same(h, &g.header)),
        (Ok(_), Err(e)) => assert!(matches!(e, Error::Truncated { .. }), "{e:?}"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Err(e), Ok(_)) => panic!("header failed ({e:?}) but the file parsed"),
    }

    if !matches!(&header, Ok(h) if h.file_len() > MAX_STREAM_RESERVE) {
        let mut s = GgufStream::new();
        let pushed = std::iter::once(&data[..split]).chain(data[split..].chunks(chunk)).try_for_each(|c| s.push(c));
        let streamed = pushed.and_then(|_| s.finish());
        match (&whole, &streamed) {
            (Ok(a), Ok(b)) => assert!(same(&a.header, &b.header) && a.file_bytes() == b.file_bytes()),
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("whole {:?} vs stream {:?}", whole.as_ref().err(), streamed.as_ref().err()),
        }
    }

    let Ok(g) = whole else { return };
    let md = g.metadata();
    let _ = g.header.architecture();
    for (k, _) in md.entries() {
        let _ = (md.get_u64(k), md.get_f32(k), md.get_bool(k), md.get_str_array(k), md.get_i32_array(k));
    }
    let mut budget = MAX_ELEMENTS;
    for info in &g.header.tensors {
        let t = g.tensor(&info.name).unwrap();
        assert_eq!(t.data.len() as u64, info.n_bytes);
        assert_eq!(&*t.shared(), t.data);
        if info.n_elements() <= budget {
            budget -= info.n_elements();
            assert_eq!(t.to_f32().unwrap().len() as u64, info.n_elements());
        }
    }

    // Compared as bytes, so that NaN metadata counts as equal to itself.
    let written = gguf::write(md, &tensors_of(&g)).unwrap();
    let again = Gguf::from_bytes(written.clone()).unwrap();
    assert_eq!(gguf::write(again.metadata(), &tensors_of(&again)).unwrap(), written);
});
