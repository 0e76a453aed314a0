//go:build !linux

package bench

import "time"

// processCPU is not measured off Linux.
func processCPU() time.Duration { return 0 }

// peakRSS is not measured off Linux.
func peakRSS() int64 { return 0 }

// currentRSS is not measured off Linux.
func currentRSS() int64 { return 0 }

// resetPeakRSS is not supported off Linux.
func resetPeakRSS() bool { return false }

// runPeakRSS is not measured off Linux.
func runPeakRSS() int64 { return 0 }

// fileLimit is not known off Linux.
func fileLimit() uint64 { return 0 }

// raiseFileLimit is not supported off Linux.
func raiseFileLimit(uint64) uint64 { return 0 }
