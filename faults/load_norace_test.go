//go:build linux && !race

package faults

// loadSubscribers is TestLoad's crowd: issue 9's 50,000.
const loadSubscribers = 50_000

// loadBuild names the build in TestLoad's RESULT line.
const loadBuild = "full size"
