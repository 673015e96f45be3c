//! The wasm glue of the `extractor` world (`--features extractor`): `content.fetch-content` →
//! the core's `content::fetch`, over the waki transport. Nothing else.

use crate::content::fetch::{self, ContentError, ContentLimits, FileRef};
use crate::content::Skip;
use crate::transport::WakiTransport;

wit_bindgen::generate!({ path: "wit", world: "extractor" });

use coco::dropbox::types as wit;
use exports::coco::dropbox::content as wit_content;

struct Extractor;

crate::wit_convert::conversions!();

fn skip_out(s: Skip) -> wit_content::Skip {
    match s {
        Skip::TooLarge { bytes, limit } => wit_content::Skip::TooLarge((bytes, limit)),
        Skip::Unsupported(m) => wit_content::Skip::Unsupported(m),
        Skip::Restricted(m) => wit_content::Skip::Restricted(m),
        Skip::NotExportable(m) => wit_content::Skip::NotExportable(m),
        Skip::Gone(m) => wit_content::Skip::Gone(m),
        Skip::Malformed(m) => wit_content::Skip::Malformed(m),
        Skip::Hostile(m) => wit_content::Skip::Hostile(m),
    }
}

impl wit_content::Guest for Extractor {
    fn fetch_content(req: wit_content::ContentRequest) -> Result<wit_content::Content, wit_content::ContentFailure> {
        let req = fetch::ContentRequest {
            app: app_in(req.app),
            tokens: tokens_in(req.tokens),
            now: req.now,
            endpoints: endpoints_in(req.endpoints),
            content: req.content,
            refresh_margin_secs: req.refresh_margin_secs,
            root_info: req.root_info.map(root_in),
            file: FileRef {
                file_id: req.file_id,
                rev: req.rev,
                name: req.name,
                size: req.size,
                downloadable: req.downloadable,
                export_as: req.export_as,
                export_options: req.export_options,
            },
            limits: ContentLimits {
                max_download_bytes: req.limits.max_download_bytes,
                max_text_bytes: req.limits.max_text_bytes,
                formats: req.limits.formats,
            },
        };
        match fetch::fetch_content(&req, &mut WakiTransport) {
            Ok(c) => Ok(wit_content::Content {
                text: c.extracted.text,
                format: c.extracted.format.name().to_string(),
                truncated: c.extracted.truncated,
                bytes: c.bytes,
                exported: c.exported,
                tokens: c.tokens.map(tokens_out),
                requests: c.stats.requests,
                refreshes: c.stats.refreshes,
            }),
            Err(f) => Err(wit_content::ContentFailure {
                error: match f.error {
                    ContentError::Failed(e) => wit_content::ContentError::Failed(error_out(e)),
                    ContentError::Skipped(s) => wit_content::ContentError::Skipped(skip_out(s)),
                },
                tokens: f.tokens.map(tokens_out),
                requests: f.stats.requests,
                refreshes: f.stats.refreshes,
            }),
        }
    }
}

export!(Extractor);
