// Loaded by mocha before every suite (.mocharc.json): the engine's info records (elections,
// leader changes) on stderr would bury the test output; tests that check logging pass their
// own logger and level. RAFTSTORE_LOG set by the caller wins.
process.env.RAFTSTORE_LOG ??= 'warn';
