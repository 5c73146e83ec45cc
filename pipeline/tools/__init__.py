"""Tools a person runs: predict, the run summary and report, synthetic pets."""
