module github.com/embargo-live/embargo

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/facebook/time v0.0.0-20260822211804-f81aedc1c1e3
	github.com/klauspost/reedsolomon v1.14.2
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/klauspost/cpuid/v2 v2.3.0 // indirect
	github.com/sirupsen/logrus v1.9.4 // indirect
)
