//! One size grammar on both sides of the contract: the host's parser
//! (`wasmtap_web::size`, used by the daemon's command line, the API and the
//! CLI) and the guest SDK's (`wasmtap_guest_sdk::parse_size`, which
//! backstores use for their configuration) accept the same strings and
//! read them as the same number of bytes.

use wasmtap_guest_sdk::parse_size as sdk;
use wasmtap_web::size::parse_size as host;

fn corpus() -> Vec<String> {
    let mut all: Vec<String> = [
        "",
        " ",
        "0",
        "00",
        "1",
        "4096",
        " 64M ",
        "\t1G\n",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "16383P",
        "16384P",
        "17179869183G",
        "17179869184G",
        "1.5G",
        "1,5G",
        "-1",
        "+1",
        "1 M",
        "1M ",
        " 1M",
        "M",
        "KiB",
        "1X",
        "1GG",
        "1KK",
        "1e3",
        "0x10",
        "1_000",
        "１",
        "1Ki",
        "1i",
        "1iB",
        "1Bi",
        "1BB",
        "1kiB",
        "1KIB",
        "1Kib",
        "1mb",
        "1Mb",
        "1mB",
        "1pib",
        "1Ü",
        "1K\0",
        "٣",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let units = [
        "", "b", "B", "k", "K", "kb", "KB", "Kb", "kib", "KiB", "KIB", "m", "M", "MB", "MiB", "g",
        "G", "GB", "GiB", "t", "T", "TB", "TiB", "p", "P", "PB", "PiB", "e", "E", "EiB", "i", "ib",
        "x",
    ];
    for n in [
        "0", "1", "7", "512", "1023", "4096", "65536", "1048575", "16383", "16384",
    ] {
        for u in units {
            all.push(format!("{n}{u}"));
        }
    }
    all
}

#[test]
fn the_host_and_the_guest_sdk_read_sizes_alike() {
    let mut accepted = 0;
    for text in corpus() {
        let (h, g) = (host(&text).ok(), sdk(&text).ok());
        assert_eq!(
            h,
            g,
            "{text:?}: host {:?}, SDK {:?}",
            host(&text),
            sdk(&text)
        );
        accepted += usize::from(h.is_some());
    }
    assert!(
        accepted > 200,
        "the corpus exercises the accepted forms too"
    );
}
