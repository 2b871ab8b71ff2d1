//! Traces on object storage: `s3://bucket/prefix` URLs. [`open_trace`] opens a local trace
//! directory or a URL; [`list_traces`] finds the traces under a URL prefix.

use std::path::Path;

use trace::Trace;

use crate::Error;

/// Opens a trace: a local directory, or an `s3://` URL.
pub fn open_trace(p: &Path) -> Result<Trace, Error> {
    if crate::fleet::is_url(p) {
        return Err(Error::Runtime(format!(
            "{}: s3:// traces are not supported yet",
            p.display()
        )));
    }
    Ok(Trace::open(p)?)
}

/// The traces (prefixes holding a `manifest.json`) under an `s3://` URL, in key order.
pub fn list_traces(url: &str) -> Result<Vec<String>, Error> {
    Err(Error::Runtime(format!(
        "{url}: s3:// traces are not supported yet"
    )))
}
