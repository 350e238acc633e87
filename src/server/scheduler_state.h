// GET /v1/scheduler/state: the engine's scheduler snapshot (engine/scheduler_monitor.h) as JSON for
// the dashboard (server/dashboard_page.h) and for scripts. Shape documented in docs/SERVER.md.
#pragma once

#include <nlohmann/json.hpp>

#include "engine/scheduler_monitor.h"

namespace fs::server {

// The JSON body; a null snapshot (the engine has not published yet) gives the same shape with
// empty queues and zeros. Pure; thread-safe.
nlohmann::json scheduler_state_json(const SchedulerSnapshot* snapshot);

}  // namespace fs::server
