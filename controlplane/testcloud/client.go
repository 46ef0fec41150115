package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// apiClient talks to the real kube-apiserver over TLS with a client certificate from the
// control plane's directory (written by scripts/lib/controlplane.sh).
type apiClient struct {
	base string
	http *http.Client
}

// newAPIClient reads DIR/apiserver.url, DIR/pki/ca.crt and DIR/pki/USER.{crt,key}.
func newAPIClient(dir, user string) (*apiClient, error) {
	url, err := os.ReadFile(filepath.Join(dir, "apiserver.url"))
	if err != nil {
		return nil, err
	}
	transport, err := tlsTransport(dir, user)
	if err != nil {
		return nil, err
	}
	return &apiClient{base: strings.TrimSpace(string(url)), http: &http.Client{Transport: transport}}, nil
}

func tlsTransport(dir, user string) (*http.Transport, error) {
	ca, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s/pki/ca.crt", dir)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki", user+".crt"), filepath.Join(dir, "pki", user+".key"))
	if err != nil {
		return nil, err
	}
	return &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}, nil
}

// do sends one request; a non-2xx answer is an error carrying the server's message.
func (c *apiClient) do(method, path, contentType string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &apiError{code: resp.StatusCode, msg: strings.TrimSpace(string(data))}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

func isStatus(err error, code int) bool {
	e, ok := err.(*apiError)
	return ok && e.code == code
}

// obj is a Kubernetes object as decoded JSON.
type obj = map[string]any

func str(o obj, path ...string) string {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(obj)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

func num(o obj, path ...string) int64 {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(obj)
		if !ok {
			return 0
		}
		cur = m[p]
	}
	f, _ := cur.(float64)
	return int64(f)
}

func child(o obj, key string) obj {
	m, _ := o[key].(obj)
	return m
}

// informer lists PATH, hands every object to handle, then watches from the list's resource
// version and hands every ADDED or MODIFIED object to handle; it starts over on any error.
func (c *apiClient) informer(path string, handle func(obj)) {
	for {
		var list struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
			Items []obj `json:"items"`
		}
		if err := c.do("GET", path, "", nil, &list); err != nil {
			logf("list %s: %v", path, err)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		for _, it := range list.Items {
			handle(it)
		}
		c.watch(path, list.Metadata.ResourceVersion, handle)
	}
}

func (c *apiClient) watch(path, rv string, handle func(obj)) {
	req, _ := http.NewRequest("GET", c.base+path+"?watch=1&allowWatchBookmarks=true&resourceVersion="+rv, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		logf("watch %s: %v", path, err)
		time.Sleep(200 * time.Millisecond)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		time.Sleep(200 * time.Millisecond)
		return
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Type   string `json:"type"`
			Object obj    `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			return
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			handle(ev.Object)
		case "ERROR":
			return
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05.000")+" testcloud: "+format+"\n", args...)
}
