package main

// The stand-ins for what no controller of this test environment does: a cloud's LoadBalancer
// (an ingress IP for `type: LoadBalancer` Services) and cert-manager's controller (a Ready
// Certificate with its TLS Secret). Both act on the real API server as controllers do: they
// watch, then write the status subresource (and, for Certificates, the Secret).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"sync"
	"time"
)

type standin struct {
	api       *apiClient
	lbDelay   time.Duration
	certDelay time.Duration

	mu      sync.Mutex
	pending map[string]bool // objects with a scheduled action
	nextIP  netip.Addr
	prefix  netip.Prefix
	given   map[string]string // namespace/name of a Service -> its IP, so a re-created Service keeps none
}

func runStandin(dir string, lbDelay, certDelay time.Duration, pool string) error {
	api, err := newAPIClient(dir, "testcloud")
	if err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(pool)
	if err != nil {
		return fmt.Errorf("--lb-ip-pool: %v", err)
	}
	s := &standin{api: api, lbDelay: lbDelay, certDelay: certDelay, pending: map[string]bool{},
		prefix: prefix, nextIP: prefix.Addr().Next(), given: map[string]string{}}
	go api.informer("/api/v1/services", s.service)
	go api.informer("/apis/cert-manager.io/v1/certificates", s.certificate)
	logf("stand-in controllers running (LoadBalancer IPs from %s after %s, Certificates Ready after %s)", pool, lbDelay, certDelay)
	select {}
}

// later runs f once after d for the object KEY, unless a run for it is already scheduled.
func (s *standin) later(key string, d time.Duration, f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[key] {
		return
	}
	s.pending[key] = true
	time.AfterFunc(d, func() {
		s.mu.Lock()
		delete(s.pending, key)
		s.mu.Unlock()
		f()
	})
}

func (s *standin) allocate(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ip, ok := s.given[key]; ok {
		return ip
	}
	ip := s.nextIP
	s.nextIP = s.nextIP.Next()
	if !s.prefix.Contains(s.nextIP) {
		s.nextIP = s.prefix.Addr().Next()
	}
	s.given[key] = ip.String()
	return ip.String()
}

func (s *standin) service(o obj) {
	if str(o, "spec", "type") != "LoadBalancer" {
		return
	}
	if ing, _ := child(child(o, "status"), "loadBalancer")["ingress"].([]any); len(ing) > 0 {
		return
	}
	ns, name := str(o, "metadata", "namespace"), str(o, "metadata", "name")
	uid := str(o, "metadata", "uid")
	key := "svc/" + uid
	s.later(key, s.lbDelay, func() {
		path := fmt.Sprintf("/api/v1/namespaces/%s/services/%s/status", ns, name)
		ip := s.allocate(ns + "/" + name + "/" + uid)
		patch := obj{"status": obj{"loadBalancer": obj{"ingress": []any{obj{"ip": ip, "ipMode": "VIP"}}}}}
		if err := s.api.do("PATCH", path, "application/merge-patch+json", patch, nil); err != nil && !isStatus(err, 404) {
			logf("service %s/%s: %v", ns, name, err)
		}
	})
}

func (s *standin) certificate(o obj) {
	ns, name := str(o, "metadata", "namespace"), str(o, "metadata", "name")
	// A Certificate being deleted is not issued (again): its deletion bumps its generation, and
	// cert-manager leaves such a Certificate alone.
	if str(o, "metadata", "deletionTimestamp") != "" {
		return
	}
	gen := num(o, "metadata", "generation")
	if conds, _ := child(o, "status")["conditions"].([]any); len(conds) > 0 {
		for _, c := range conds {
			if c, ok := c.(obj); ok && str(c, "type") == "Ready" && str(c, "status") == "True" && num(c, "observedGeneration") == gen {
				return
			}
		}
	}
	key := fmt.Sprintf("cert/%s/%d", str(o, "metadata", "uid"), gen)
	s.later(key, s.certDelay, func() {
		if err := s.issue(o); err != nil && !isStatus(err, 404) {
			logf("certificate %s/%s: %v", ns, name, err)
		}
	})
}

// issue writes the Certificate's Secret (a self-signed certificate for its dnsNames, with the
// annotations cert-manager sets) and marks it Ready, as cert-manager's controller does.
func (s *standin) issue(o obj) error {
	ns, name := str(o, "metadata", "namespace"), str(o, "metadata", "name")
	// The Certificate as it is now (the event was seen a while ago): one deleted or being deleted
	// meanwhile gets no Secret, which nothing would remove.
	var current obj
	if err := s.api.do("GET", fmt.Sprintf("/apis/cert-manager.io/v1/namespaces/%s/certificates/%s", ns, name), "", nil, &current); err != nil {
		return err
	}
	if str(current, "metadata", "uid") != str(o, "metadata", "uid") || str(current, "metadata", "deletionTimestamp") != "" {
		return nil
	}
	spec := child(o, "spec")
	secretName := str(spec, "secretName")
	var dnsNames []string
	if list, ok := spec["dnsNames"].([]any); ok {
		for _, d := range list {
			if d, ok := d.(string); ok {
				dnsNames = append(dnsNames, d)
			}
		}
	}
	notBefore := time.Now().UTC().Truncate(time.Second)
	notAfter := notBefore.Add(90 * 24 * time.Hour)
	certPEM, keyPEM, err := selfSigned(dnsNames, notBefore, notAfter)
	if err != nil {
		return err
	}
	issuer := child(spec, "issuerRef")
	secret := obj{
		"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
		"metadata": obj{"name": secretName, "namespace": ns, "annotations": obj{
			"cert-manager.io/certificate-name": name,
			"cert-manager.io/issuer-name":      str(issuer, "name"),
			"cert-manager.io/issuer-kind":      str(issuer, "kind"),
			"cert-manager.io/issuer-group":     str(issuer, "group"),
			"cert-manager.io/common-name":      first(dnsNames),
			"cert-manager.io/alt-names":        strings.Join(dnsNames, ","),
		}},
		"data": obj{"tls.crt": base64.StdEncoding.EncodeToString(certPEM), "tls.key": base64.StdEncoding.EncodeToString(keyPEM)},
	}
	path := fmt.Sprintf("/api/v1/namespaces/%s/secrets/%s?fieldManager=cert-manager-certificates-issuing&force=true", ns, secretName)
	if err := s.api.do("PATCH", path, "application/apply-patch+yaml", secret, nil); err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	status := obj{"status": obj{
		"conditions": []any{obj{"type": "Ready", "status": "True", "reason": "Ready",
			"message": "Certificate is up to date and has not expired", "lastTransitionTime": now,
			"observedGeneration": num(o, "metadata", "generation")}},
		"notBefore":   notBefore.Format(time.RFC3339),
		"notAfter":    notAfter.Format(time.RFC3339),
		"renewalTime": notAfter.Add(-30 * 24 * time.Hour).Format(time.RFC3339),
		"revision":    1,
	}}
	return s.api.do("PATCH", fmt.Sprintf("/apis/cert-manager.io/v1/namespaces/%s/certificates/%s/status", ns, name),
		"application/merge-patch+json", status, nil)
}

func selfSigned(dnsNames []string, notBefore, notAfter time.Time) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: first(dnsNames)}, DNSNames: dnsNames,
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func first(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}
