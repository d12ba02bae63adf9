//! `MetricScrape`: the instance's scrape assignment for this MID, handed to the MID's
//! [`Scraper`](crate::metrics::Scraper), which keeps it on disk and (re)starts its
//! scrape loops. The job answers at once, naming the targets the egress policy
//! refuses; the scraping itself runs outside any job.

use super::ProbeError;
use super::registry::{Call, Probe, Ran};
use openmid_proto::metrics::{ScrapeAccepted, ScrapeAssignment};

/// The `MetricScrape` entry of the [registry](super::registry).
pub struct MetricScrapeProbe;

impl Probe for MetricScrapeProbe {
    type Contract = openmid_proto::metrics::MetricScrape;
    // Each target is checked by the scraper, under `policy.http`.

    fn run<'a>(
        &'a self,
        req: ScrapeAssignment,
        call: Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Ran<ScrapeAccepted>, ProbeError>> {
        Box::pin(async move {
            let scraper = call.ctx.metrics.as_ref().ok_or_else(|| {
                ProbeError::Target("this MID runs without metric collection".into())
            })?;
            let accepted = scraper
                .accept(req)
                .map_err(|e| ProbeError::Target(e.to_string()))?;
            Ok(Ran::response(accepted))
        })
    }
}
