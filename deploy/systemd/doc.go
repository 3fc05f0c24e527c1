// Package systemd holds the systemd units and environment-file examples of
// Outpost's roles (see README.md) and, in its test, the checks that keep
// them true to the binaries: every variable an example sets is one the
// binary reads, every unit starts a binary built from cmd/, and
// `systemd-analyze verify` accepts the units where it is installed.
package systemd
