//! `wasmtap lun create|delete`.

use std::path::Path;

use wasmtap_kernel::configfs::{self, LunSpec};

use wasmtap_web::size::parse_nonzero_size;

/// `wasmtap lun create`: validate, create the backstore and its LUN, report.
pub fn create(
    root: &Path,
    name: &str,
    size: &str,
    block_size: u32,
    max_transfer: &str,
    dev_config: &str,
) -> Result<(), String> {
    let size = parse_nonzero_size(size)?;
    let max_transfer = parse_nonzero_size(max_transfer)?;
    let spec = LunSpec {
        name: name.to_string(),
        size,
        block_size,
        max_sectors: (max_transfer / u64::from(block_size.max(1))).clamp(1, u64::from(u32::MAX))
            as u32,
        config: dev_config.to_string(),
        hba: 0,
    };
    spec.validate()?;
    let tpg = configfs::create_lun(root, &spec).map_err(|e| e.to_string())?;
    println!(
        "created backstore user_0/{name} ({size} bytes, {block_size}-byte blocks) exported at {}",
        tpg.display()
    );
    Ok(())
}

/// `wasmtap lun delete`.
pub fn delete(root: &Path, name: &str) -> Result<(), String> {
    configfs::delete_lun(root, 0, name).map_err(|e| e.to_string())?;
    println!("deleted backstore user_0/{name} and its LUNs");
    Ok(())
}
