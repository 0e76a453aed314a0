package cpix_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/cpix"
)

// An origin exports one period to an edge; the edge reads it back with its
// private key. The outline is the document's element structure.
func ExampleEncodeBundles() {
	edgeKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge-1"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &edgeKey.PublicKey, edgeKey)
	edgeCert, _ := x509.ParseCertificate(der)

	b := &bundle.Bundle{Stream: 7, Period: 42, ReleaseAt: 1_800_000_000_000_000_000, PresentAt: 1_800_000_002_000_000_000,
		Shards: [][]byte{[]byte("datagram 0"), []byte("datagram 1")}}
	rand.Read(b.RK[:])

	doc, err := cpix.EncodeBundles([]*bundle.Bundle{b}, edgeCert)
	if err != nil {
		fmt.Println(err)
		return
	}
	outline(doc)
	got, err := cpix.DecodeBundles(doc, edgeKey)
	fmt.Println(len(got), err, got[0].RK == b.RK)
	// Output:
	// CPIX
	//   DeliveryDataList
	//     DeliveryData
	//       DeliveryKey
	//         ds:X509Data
	//           ds:X509Certificate
	//       DocumentKey
	//         Data
	//           pskc:Secret
	//             pskc:EncryptedValue
	//               enc:EncryptionMethod
	//               enc:CipherData
	//                 enc:CipherValue
	//       MACMethod
	//         pskc:MACKey
	//           enc:EncryptionMethod
	//           enc:CipherData
	//             enc:CipherValue
	//   ContentKeyList
	//     ContentKey
	//       Data
	//         pskc:Secret
	//           pskc:EncryptedValue
	//             enc:EncryptionMethod
	//             enc:CipherData
	//               enc:CipherValue
	//           pskc:ValueMAC
	//   ContentKeyPeriodList
	//     ContentKeyPeriod
	//   ContentKeyUsageRuleList
	//     ContentKeyUsageRule
	//       KeyPeriodFilter
	//       emb:Bundle
	//         emb:Announce
	//         emb:Announce
	//         emb:MAC
	// 1 <nil> true
}

func outline(doc []byte) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	depth := 0
	for {
		tok, err := d.RawToken()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != "" {
				name = t.Name.Space + ":" + name
			}
			fmt.Println(strings.Repeat("  ", depth) + name)
			depth++
		case xml.EndElement:
			depth--
		}
	}
}
