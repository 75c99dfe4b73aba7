#pragma once
// The netfilter rules the agent owns, written with the iptables tools (as Cilium does): today the legacy masquerade
// chain. Called at start, before the reconcile thread runs.

#include <optional>

#include "plexus/common/result.h"
#include "plexus/node/masquerade.h"

namespace plexus::agent {

// Installs the masquerade chain with `rules` (idempotent: the chain is rewritten whole, the POSTROUTING jump added
// once), or, with nullopt, removes what an earlier run installed. The rules stay while the agent is down, so the
// pods keep their way out.
Status applyMasqueradeRules(const std::optional<node::MasqueradeRules>& rules);

}  // namespace plexus::agent
