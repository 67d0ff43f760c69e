"""Framework-free training code every backend shares: batch order, schedule, loop, clocks, results, weights."""
