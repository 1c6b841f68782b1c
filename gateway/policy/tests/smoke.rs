mod support;
use pvgate_policy::types::*;
use support::*;

#[test]
fn default_plugin_loads_and_answers() {
    let e = engine();
    let t = e
        .load("acme", example("default"), cfg(&[]))
        .unwrap_or_else(|err| panic!("{err}"));
    let (v, r) = t.video_with_report(&guest(5, &[]), &connector(1280, 720));
    eprintln!("{v:?} {r:?}");
    eprintln!("{:?}", t.plugin_info());
    assert_eq!(v.max_size, Size::new(1280, 720));
}
