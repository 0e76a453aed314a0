// Package cpixtest checks CPIX documents against the official DASH-IF
// CPIX 2.4 and 2.3.1 schemas (embedded from xsd/, see its README for
// their source and licences) with libxml2's xmllint, for the tests of
// every package that writes CPIX. Where xmllint is not installed the
// check skips and says why; CI installs it.
package cpixtest
