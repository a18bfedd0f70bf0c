#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mlscore_fuzz::run("xgboost_pickle", data);
});
