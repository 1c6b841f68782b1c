//! Page directories: build on the frontend side, walk on the backend side.

use proptest::prelude::*;
use pvgate_protocol::pagedir::*;
use pvgate_protocol::GrantRef;
use std::collections::HashMap;

/// Grants a frontend would hand out: directory pages 1000.., data pages 1_000_000..
fn refs(n: u32) -> (Vec<GrantRef>, Vec<GrantRef>) {
    let dir = (0..directory_pages(n)).map(|i| 1000 + i).collect();
    let data = (0..n).map(|i| 1_000_000 + i * 7).collect();
    (dir, data)
}

/// The frontend's granted directory pages, as the backend would map them.
fn granted(dir: &[GrantRef], pages: Vec<Box<DirPage>>) -> HashMap<GrantRef, Box<DirPage>> {
    dir.iter().copied().zip(pages).collect()
}

fn parse(
    first: GrantRef,
    n: u32,
    pages: &HashMap<GrantRef, Box<DirPage>>,
) -> Result<Vec<GrantRef>, PageDirError> {
    parse_directory(first, n, |r| pages.get(&r).cloned().ok_or("not granted")).map_err(
        |e| match e {
            ParseError::Directory(d) => d,
            ParseError::Copy(e) => panic!("{e}"),
        },
    )
}

#[test]
fn counts() {
    assert_eq!(REFS_PER_PAGE, 1023);
    assert_eq!((NEXT_OFFSET, REFS_OFFSET), (0, 4));
    assert_eq!(grant_count(0), 0);
    assert_eq!(grant_count(1), 1);
    assert_eq!(grant_count(4096), 1);
    assert_eq!(grant_count(4097), 2);
    assert_eq!(grant_count(1920 * 1080 * 4), 2025);
    assert_eq!(grant_count(u32::MAX), 1 << 20);
    assert_eq!(directory_pages(0), 1);
    assert_eq!(directory_pages(1023), 1);
    assert_eq!(directory_pages(1024), 2);
    assert_eq!(directory_pages(2046), 2);
    assert_eq!(directory_pages(2047), 3);
}

#[test]
fn directory_page_bytes() {
    let (dir, data) = refs(1025);
    let pages = build_directory(&dir, &data).unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(
        &pages[0][0..4],
        &1001u32.to_le_bytes(),
        "gref_dir_next_page"
    );
    assert_eq!(&pages[0][4..8], &1_000_000u32.to_le_bytes(), "gref[0]");
    assert_eq!(
        &pages[0][4092..4096],
        &data[1022].to_le_bytes(),
        "gref[1022]"
    );
    assert_eq!(
        &pages[1][0..4],
        &0u32.to_le_bytes(),
        "the last page ends the chain"
    );
    assert_eq!(&pages[1][4..8], &data[1023].to_le_bytes());
    assert_eq!(&pages[1][8..12], &data[1024].to_le_bytes());
    assert!(pages[1][12..].iter().all(|b| *b == 0));
}

#[test]
fn build_and_parse_the_interesting_sizes() {
    for n in [
        0u32, 1, 2, 1022, 1023, 1024, 2046, 2047, 2048, 3069, 3070, 5000,
    ] {
        let (dir, data) = refs(n);
        let pages = granted(&dir, build_directory(&dir, &data).unwrap());
        assert_eq!(parse(dir[0], n, &pages).unwrap(), data, "{n} refs");
    }
}

#[test]
fn be_alloc_backend_fills_frontend_links() {
    let n = 1500;
    let (dir, _) = refs(n);
    let mut pages = granted(&dir, build_links(&dir, n).unwrap());
    let backend_refs: Vec<GrantRef> = (0..n).map(|i| 50_000 + i).collect();
    // Backend: walk the links, write its references into each page.
    let mut w = DirectoryWalker::new(dir[0], n).unwrap();
    while let Some(r) = w.next_page_ref() {
        let copy = pages[&r].clone();
        let range = w.feed_link(&copy).unwrap();
        let bytes = encode_refs(&backend_refs[range]);
        pages.get_mut(&r).unwrap()[REFS_OFFSET..REFS_OFFSET + bytes.len()].copy_from_slice(&bytes);
    }
    w.finish().unwrap();
    // Frontend: read them back.
    assert_eq!(parse(dir[0], n, &pages).unwrap(), backend_refs);
}

#[test]
fn malformed_chains_are_refused() {
    let n = 2500; // 3 directory pages
    let (dir, data) = refs(n);
    let good = granted(&dir, build_directory(&dir, &data).unwrap());
    assert_eq!(parse(0, n, &good), Err(PageDirError::ZeroDirectoryRef));

    // Page 1 links back to page 0.
    let mut pages = good.clone();
    pages.get_mut(&dir[1]).unwrap()[0..4].copy_from_slice(&dir[0].to_le_bytes());
    assert_eq!(
        parse(dir[0], n, &pages),
        Err(PageDirError::Loop { dir_ref: dir[0] })
    );

    // Page 0 links to itself.
    let mut pages = good.clone();
    pages.get_mut(&dir[0]).unwrap()[0..4].copy_from_slice(&dir[0].to_le_bytes());
    assert_eq!(
        parse(dir[0], n, &pages),
        Err(PageDirError::Loop { dir_ref: dir[0] })
    );

    // The chain stops early.
    let mut pages = good.clone();
    pages.get_mut(&dir[1]).unwrap()[0..4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        parse(dir[0], n, &pages),
        Err(PageDirError::ChainTooShort {
            pages_seen: 2,
            pages_needed: 3,
            data_refs: n
        })
    );

    // The last needed page links on.
    let mut pages = good.clone();
    pages.get_mut(&dir[2]).unwrap()[0..4].copy_from_slice(&9999u32.to_le_bytes());
    assert_eq!(
        parse(dir[0], n, &pages),
        Err(PageDirError::ChainTooLong {
            page: 2,
            next: 9999,
            pages_needed: 3,
            data_refs: n
        })
    );

    // A hole in the data references.
    let mut pages = good.clone();
    let off = REFS_OFFSET + 4 * 5;
    pages.get_mut(&dir[1]).unwrap()[off..off + 4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        parse(dir[0], n, &pages),
        Err(PageDirError::ZeroDataRef { index: 1023 + 5 })
    );

    // A directory claiming a smaller buffer than it describes is also a
    // chain that is too long.
    assert!(matches!(
        parse(dir[0], 1000, &good),
        Err(PageDirError::ChainTooLong { page: 0, .. })
    ));

    let mut w = DirectoryWalker::new(dir[0], 1).unwrap();
    let single = build_directory(&dir[..1], &data[..1]).unwrap();
    w.feed(&single[0]).unwrap();
    assert_eq!(w.feed(&single[0]), Err(PageDirError::AlreadyComplete));
    assert!(matches!(
        DirectoryWalker::new(5, 2000).unwrap().finish(),
        Err(PageDirError::Incomplete { .. })
    ));
}

#[test]
fn build_refuses_bad_inputs() {
    let (dir, mut data) = refs(10);
    assert_eq!(
        build_directory(&[1, 2], &data).unwrap_err(),
        PageDirError::WrongDirPageCount {
            data_refs: 10,
            needed: 1,
            given: 2
        }
    );
    assert_eq!(
        build_directory(&[0], &data).unwrap_err(),
        PageDirError::ZeroDirRef { index: 0 }
    );
    data[3] = 0;
    assert_eq!(
        build_directory(&dir, &data).unwrap_err(),
        PageDirError::ZeroDataRef { index: 3 }
    );
}

proptest! {
    #[test]
    fn any_page_count_roundtrips(n in prop_oneof![Just(0u32), Just(1), Just(1023), Just(1024), Just(2047), 0u32..6000],
                                 salt in 1u32..1_000_000) {
        let dir: Vec<GrantRef> = (0..directory_pages(n)).map(|i| salt + i).collect();
        let data: Vec<GrantRef> = (0..n).map(|i| salt.wrapping_mul(3).wrapping_add(i * 11) | 1).collect();
        let pages = granted(&dir, build_directory(&dir, &data).unwrap());
        prop_assert_eq!(parse(dir[0], n, &pages).unwrap(), data);
    }

    /// Corrupting any link of a valid chain never yields a wrong answer:
    /// it is either refused or (if the corruption wrote the same value) the
    /// original references.
    #[test]
    fn corrupted_links_are_refused(n in 1024u32..5000, page in 0usize..5, link in any::<u32>()) {
        let (dir, data) = refs(n);
        let mut pages = granted(&dir, build_directory(&dir, &data).unwrap());
        let victim = dir[page % dir.len()];
        pages.get_mut(&victim).unwrap()[0..4].copy_from_slice(&link.to_le_bytes());
        let r = parse_directory(dir[0], n, |r| pages.get(&r).cloned().ok_or(r));
        match r {
            Ok(got) => prop_assert_eq!(got, data),
            Err(ParseError::Directory(_)) => {}
            // A link to a page that was never granted: the map fails, the
            // backend would see a grant error.
            Err(ParseError::Copy(r)) => prop_assert_eq!(r, link),
        }
    }
}
