//! Write seed inputs for the `scsi_cdb` fuzz target: one representative
//! CDB per supported command (plus data-out where it takes some), in the
//! target's input layout (see fuzz/fuzz_targets/scsi_cdb.rs).
//!
//! SANITIZE runs inline there: the fuzz device has 64 blocks, so even 31
//! OVERWRITE passes are a few MiB of copying, and IMMED=1 is refused (the
//! fuzz target drives no background jobs), so no input can leave the
//! device waiting for a sanitize that never runs.
//!
//! `cargo run -p wasmtap-scsi --example scsi_fuzz_seeds -- fuzz/corpus/scsi_cdb`

/// One command in the fuzz input layout.
fn cmd(cdb: &[u8], data: &[u8], buf_len: u16) -> Vec<u8> {
    let mut v = vec![cdb.len() as u8];
    v.extend_from_slice(cdb);
    v.extend_from_slice(&buf_len.to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A data-in command that is not the last of its input: its buffer is
/// given as zeros, or the harness would take the next commands as its
/// data-out.
fn data_in(cdb: &[u8], buf_len: u16) -> Vec<u8> {
    cmd(cdb, &vec![0; usize::from(buf_len)], buf_len)
}

/// An EXTENDED COPY(LID1) parameter list: header (LIST IDENTIFIER, LIST ID
/// USAGE), identification CSCD descriptors (E4h, NAA designator, DISK
/// BLOCK LENGTH), block-to-block segment descriptors (02h: source and
/// destination CSCD, NUMBER OF BLOCKS, source and destination LBA).
fn xcopy_list(list_id: u8, flags: u8, cscds: &[(u64, u32)], segs: &[[u64; 5]]) -> Vec<u8> {
    let mut p = vec![list_id, flags];
    p.extend_from_slice(&((32 * cscds.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&((28 * segs.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for &(naa, block_len) in cscds {
        let mut d = [0u8; 32];
        d[0] = 0xE4;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 8;
        d[8..16].copy_from_slice(&naa.to_be_bytes());
        d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
        p.extend_from_slice(&d);
    }
    for &[src, dst, blocks, src_lba, dst_lba] in segs {
        let mut d = [0u8; 28];
        d[0] = 0x02;
        d[3] = 0x18;
        d[4..6].copy_from_slice(&(src as u16).to_be_bytes());
        d[6..8].copy_from_slice(&(dst as u16).to_be_bytes());
        d[10..12].copy_from_slice(&(blocks as u16).to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        p.extend_from_slice(&d);
    }
    p
}

/// EXTENDED COPY(LID1) carrying `list`.
fn xcopy(list: &[u8]) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[10..14].copy_from_slice(&(list.len() as u32).to_be_bytes());
    cmd(&cdb, list, list.len() as u16)
}

/// THIRD-PARTY COPY IN (RECEIVE COPY RESULTS) service action `sa`. Its
/// 255-byte buffer takes the input bytes after it as data-out, so it ends
/// its seed, as reads do.
fn receive_copy(sa: u8, list_id: u8) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x84;
    cdb[1] = sa;
    cdb[2] = list_id;
    cdb[13] = 255;
    cmd(&cdb, &[], 255)
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).expect("usage: scsi_fuzz_seeds DIR");
    std::fs::create_dir_all(&dir)?;
    let tur = cmd(&[0; 6], &[], 0);
    let block = vec![0xA5u8; 512];
    let mut two = vec![0u8; 1024];
    two[512..].fill(0x5A);
    let unmap = [
        0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0, 0,
    ];
    // The fuzz target's device is named "fuzz": copies within it name it
    // by its NAA, or by CSCD descriptor ID FFFFh.
    let naa = wasmtap_scsi::DeviceIdentity::new("fuzz").unwrap().naa();
    let local = u64::from(u16::MAX);
    let mut caching = vec![0u8, 0, 0, 0, 0x08, 0x12];
    caching.extend_from_slice(&[0; 18]);
    // GET LBA STATUS from LBA 0, room for four descriptors.
    let gls = |alloc: u8| {
        let mut c = [0u8; 16];
        c[0] = 0x9E;
        c[1] = 0x12;
        c[13] = alloc;
        c
    };
    // SANITIZE OVERWRITE parameter list: INVERT, two passes, 3-byte pattern.
    let overwrite = [0x82, 0, 0, 3, 0xDE, 0xAD, 0x42];
    // SANITIZE CDB: byte 1 (IMMED, AUSE, service action), list length.
    let sanitize = |b1: u8, len: u8| [0x48, b1, 0, 0, 0, 0, 0, 0, len, 0];
    let seeds: Vec<(u8, Vec<Vec<u8>>)> = vec![
        (0, vec![tur.clone(), tur.clone()]),
        (1, vec![tur.clone(), cmd(&[0x12, 0, 0, 0, 96, 0], &[], 96)]),
        (
            1,
            vec![tur.clone(), cmd(&[0x12, 1, 0x83, 0, 255, 0], &[], 255)],
        ),
        (
            1,
            vec![tur.clone(), cmd(&[0x12, 1, 0xB0, 0, 255, 0], &[], 255)],
        ),
        (0, vec![cmd(&[0x03, 1, 0, 0, 252, 0], &[], 252)]),
        (
            0,
            vec![tur.clone(), cmd(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8)],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(
                    &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                    &[],
                    32,
                ),
            ],
        ),
        (
            0,
            vec![tur.clone(), cmd(&[0x1A, 0, 0x3F, 0, 255, 0], &[], 255)],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0], &[], 255),
            ],
        ),
        (
            0,
            vec![tur.clone(), cmd(&[0x15, 0x10, 0, 0, 24, 0], &caching, 24)],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x0A, 0, 0, 1, 1, 0], &block, 512),
                cmd(&[0x08, 0, 0, 1, 1, 0], &[], 512),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x2A, 0x08, 0, 0, 0, 2, 0, 0, 1, 0], &block, 512),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(
                    &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0],
                    &[],
                    1024,
                ),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0xAA, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0], &block, 512),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x34, 0x02, 0, 0, 0, 4, 0, 0, 8, 0], &[], 0),
                cmd(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x35, 0x02, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &unmap, 24),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(&[0x41, 0x08, 0, 0, 0, 0, 0, 0, 4, 0], &[0; 512], 512),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(
                    &[0x93, 0x09, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0],
                    &[],
                    0,
                ),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(
                    &[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0],
                    &two,
                    1024,
                ),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(
                    &[0x8B, 0x08, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0],
                    &block,
                    512,
                ),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(
                    &[0x9C, 0x08, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0],
                    &block,
                    512,
                ),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x2F, 0x02, 0, 0, 0, 1, 0, 0, 1, 0], &block, 512),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x2E, 0x02, 0, 0, 0, 1, 0, 0, 1, 0], &block, 512),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0xAE, 0x02, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0], &block, 512),
                cmd(&[0xAF, 0x02, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0], &block, 512),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x1B, 0, 0, 0, 0, 0], &[], 0),
                cmd(&[0x1E, 0, 0, 0, 1, 0], &[], 0),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x37, 0, 0x0C, 0, 0, 0, 0, 0, 8, 0], &[], 8),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0xB7, 0x18, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], &[], 8),
            ],
        ),
        (1, vec![tur.clone(), cmd(&[0x04, 0, 0, 0, 0, 0], &[], 0)]),
        (
            1,
            vec![
                tur.clone(),
                cmd(&[0xA3, 0x0C, 0x80, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], &[], 4096),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], &[], 16),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(&[0x2A, 0, 0, 0, 0, 4, 0, 0, 1, 0], &block, 512),
                cmd(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &unmap, 24),
                data_in(&gls(72), 72),
            ],
        ),
        (
            0,
            vec![
                tur.clone(),
                cmd(&sanitize(0x01, 7), &overwrite, 7),
                data_in(&[0x03, 1, 0, 0, 252, 0], 252),
                data_in(&gls(24), 24),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(&sanitize(0x22, 0), &[], 0),
                data_in(&gls(40), 40),
                cmd(&sanitize(0x1F, 0), &[], 0),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(&sanitize(0x81, 7), &overwrite, 7),
                data_in(&[0x03, 0, 0, 0, 18, 0], 18),
                cmd(&sanitize(0x03, 0), &[], 0),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                cmd(
                    &[0xA3, 0x0C, 0x02, 0x48, 0, 0x02, 0, 0, 0, 64, 0, 0],
                    &[],
                    64,
                ),
            ],
        ),
        // EXTENDED COPY(LID1) and RECEIVE COPY RESULTS.
        (
            0,
            vec![
                tur.clone(),
                cmd(&[0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0], &block, 512),
                xcopy(&xcopy_list(1, 0, &[(naa, 512)], &[[0, 0, 8, 0, 16]])),
                receive_copy(0x00, 1),
            ],
        ),
        (
            8,
            vec![
                tur.clone(),
                xcopy(&xcopy_list(4, 0, &[(naa, 512)], &[[0, 0, 8, 0, 16]])),
                receive_copy(0x04, 4),
            ],
        ),
        (
            4,
            vec![
                tur.clone(),
                xcopy(&xcopy_list(
                    0,
                    0x18,
                    &[],
                    &[[local, local, 4, 0, 2], [local, local, 8, 40, 30]],
                )),
                receive_copy(0x03, 0),
            ],
        ),
        (
            1,
            vec![
                tur.clone(),
                xcopy(&xcopy_list(
                    2,
                    0x10,
                    &[(naa, 512), (naa, 512)],
                    &[[1, 0, 32, 0, 20]],
                )),
                cmd(&[0x12, 1, 0x8F, 0, 255, 0], &[], 255),
            ],
        ),
        (
            2,
            vec![
                tur,
                xcopy(&xcopy_list(3, 0, &[(naa, 512)], &[[0, 0, 1, 0, 1]])),
                receive_copy(0x04, 3),
            ],
        ),
    ];
    for (i, (dev, cmds)) in seeds.into_iter().enumerate() {
        let mut input = vec![dev];
        for c in cmds {
            input.extend(c);
        }
        std::fs::write(format!("{dir}/seed-{i:02}"), input)?;
    }
    Ok(())
}
