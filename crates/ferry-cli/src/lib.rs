//! The library half of the ferry command line: file readers the binary uses that are worth
//! reaching from elsewhere (the fuzz targets in `fuzz/`).

pub mod npy;
