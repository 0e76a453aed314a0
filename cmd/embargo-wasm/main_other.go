//go:build !(js && wasm)

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "embargo-wasm runs in a web page: build it with GOOS=js GOARCH=wasm go build -o embargo.wasm ./cmd/embargo-wasm")
	os.Exit(2)
}
