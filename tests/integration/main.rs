//! The one integration-test binary (ripgrep style): every end-to-end test lives in a module here.
