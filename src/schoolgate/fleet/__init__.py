"""Regional rollout of the kit: waves over the school fleet, per-school results, resume, reports."""
