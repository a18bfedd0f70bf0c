//! Writes every fuzz target's seeds into `DIR/<target>/seed-<n>` (the corpora `scripts/fuzz`
//! starts from; files already there are kept).
//!
//!     cargo run --example seeds -p mlscore-fuzz -- DIR

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: seeds DIR")?;
    for target in mlscore_fuzz::targets() {
        let out = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&out)?;
        for (i, seed) in mlscore_fuzz::seeds(target).iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}
