// The dashboard: one static HTML page (inline CSS and JS, no external resources) served at / and
// /dashboard. It polls GET /v1/scheduler/state twice a second and draws the MLFQ queues with their
// jobs, the running batch, KV pool gauges, swap traffic, latency percentiles and time-series
// charts; its chat box streams a /v1/chat/completions request and marks that job in the queues.
// With --api-key it asks for the key (kept in sessionStorage) and sends it as a Bearer token.
#pragma once

#include <string_view>

namespace fs::server {

std::string_view dashboard_page_html();

}  // namespace fs::server
