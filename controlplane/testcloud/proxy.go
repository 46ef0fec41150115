package main

// A fault-injecting proxy in front of the real kube-apiserver. Each test starts its own, on a
// free loopback port, speaking plain HTTP to the test and TLS with the admin's client
// certificate to the API server. Its admin API under /_admin/ sets what goes wrong:
//
//   - PATCH /_admin/config {"latencyMs", "neverReadyDeployments", "neverAssignLbIp",
//     "neverReadyCertificates"}: added latency; Deployments, LoadBalancer Services and
//     Certificates read through this proxy show no readiness (as if their controller or the
//     cloud never got to them); the objects themselves are untouched.
//   - POST /_admin/faults {"verb", "resource", "namespace", "name", "pathPrefix", "nth", "times",
//     and one of "status" (+ "retryAfterSeconds", "message"), "drop": true (the connection is
//     closed without an answer), "delayMs" (held that long first), "cutAfterMs" (a watch or
//     answer is cut off mid-stream)}: from the nth matching request on, `times` of them (0: all).
//     GET lists the rules with their counters; DELETE removes them.
//   - GET /_admin/requests: the requests seen (verb, resource, namespace, name, path); DELETE clears it.
//   - POST /_admin/reset: clears faults, the log and the config.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type proxyConfig struct {
	LatencyMs              int64 `json:"latencyMs"`
	NeverReadyDeployments  bool  `json:"neverReadyDeployments"`
	NeverAssignLbIP        bool  `json:"neverAssignLbIp"`
	NeverReadyCertificates bool  `json:"neverReadyCertificates"`
}

type fault struct {
	ID                int64  `json:"id"`
	Verb              string `json:"verb,omitempty"`
	Resource          string `json:"resource,omitempty"`
	Namespace         string `json:"namespace,omitempty"`
	Name              string `json:"name,omitempty"`
	PathPrefix        string `json:"pathPrefix,omitempty"`
	Nth               int64  `json:"nth"`
	Times             int64  `json:"times"`
	Status            int    `json:"status,omitempty"`
	RetryAfterSeconds *int64 `json:"retryAfterSeconds,omitempty"`
	Message           string `json:"message,omitempty"`
	Drop              bool   `json:"drop,omitempty"`
	DelayMs           int64  `json:"delayMs,omitempty"`
	CutAfterMs        int64  `json:"cutAfterMs,omitempty"`
	Seen              int64  `json:"seen"`
	Fired             int64  `json:"fired"`
}

// reqInfo is what a request does, as the API server's request-info resolver sees it.
type reqInfo struct {
	Verb      string `json:"verb"`
	Group     string `json:"group"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Sub       string `json:"subresource,omitempty"`
	Path      string `json:"path"`
}

type proxy struct {
	mu       sync.Mutex
	config   proxyConfig
	faults   []*fault
	nextID   int64
	requests []reqInfo
	rp       *httputil.ReverseProxy
}

func runProxy(dir, listen string) error {
	upstreamURL, err := readTrim(dir + "/apiserver.url")
	if err != nil {
		return err
	}
	target, err := url.Parse(upstreamURL)
	if err != nil {
		return err
	}
	transport, err := tlsTransport(dir, "admin")
	if err != nil {
		return err
	}
	p := &proxy{nextID: 1}
	p.rp = newReverseProxy(target, transport, p)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

func newReverseProxy(target *url.URL, transport http.RoundTripper, p *proxy) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
			// Answers are rewritten for the readiness faults: ask for them uncompressed.
			r.Out.Header.Del("Accept-Encoding")
			r.Out.Header.Del("Authorization")
		},
		Transport:      transport,
		FlushInterval:  -1,
		ModifyResponse: p.modifyResponse,
	}
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_admin" || strings.HasPrefix(r.URL.Path, "/_admin/") {
		p.admin(w, r)
		return
	}
	info := resolve(r)
	p.mu.Lock()
	p.requests = append(p.requests, info)
	if len(p.requests) > 10000 {
		p.requests = p.requests[len(p.requests)-10000:]
	}
	latency := time.Duration(p.config.LatencyMs) * time.Millisecond
	var fired *fault
	for _, f := range p.faults {
		if f.matches(info) {
			f.Seen++
			if fired == nil && f.Seen >= f.Nth && (f.Times == 0 || f.Fired < f.Times) {
				f.Fired++
				snapshot := *f
				fired = &snapshot
			}
		}
	}
	p.mu.Unlock()
	if latency > 0 {
		time.Sleep(latency)
	}
	if fired != nil {
		if fired.DelayMs > 0 {
			select {
			case <-time.After(time.Duration(fired.DelayMs) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case fired.Drop:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		case fired.Status != 0:
			writeStatus(w, fired)
			return
		case fired.CutAfterMs > 0:
			ctx, cancel := context.WithTimeout(r.Context(), time.Duration(fired.CutAfterMs)*time.Millisecond)
			defer cancel()
			r = r.WithContext(ctx)
		}
	}
	p.rp.ServeHTTP(w, r)
}

func (f *fault) matches(i reqInfo) bool {
	verbOK := f.Verb == "" || f.Verb == "*" || f.Verb == i.Verb || (f.Verb == "patch" && i.Verb == "apply")
	resOK := f.Resource == "" || f.Resource == "*" || f.Resource == i.Resource ||
		(i.Group != "" && f.Resource == i.Resource+"."+i.Group)
	return verbOK && resOK && (f.Namespace == "" || f.Namespace == i.Namespace) &&
		(f.Name == "" || f.Name == i.Name) && (f.PathPrefix == "" || strings.HasPrefix(i.Path, f.PathPrefix))
}

func writeStatus(w http.ResponseWriter, f *fault) {
	reasons := map[int]string{400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
		409: "Conflict", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
		504: "Timeout"}
	msg := f.Message
	if msg == "" {
		msg = fmt.Sprintf("injected fault %d", f.ID)
	}
	if f.RetryAfterSeconds != nil && (f.Status == 429 || f.Status == 503) {
		w.Header().Set("Retry-After", strconv.FormatInt(*f.RetryAfterSeconds, 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(obj{"kind": "Status", "apiVersion": "v1", "metadata": obj{},
		"status": "Failure", "message": msg, "reason": reasons[f.Status], "code": f.Status})
}

// resolve splits an API path as the API server does: /api/v1/... or /apis/GROUP/VERSION/...,
// then optional namespaces/NS, the resource, a name and a subresource.
func resolve(r *http.Request) reqInfo {
	info := reqInfo{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		info.Group, rest = parts[1], parts[3:]
	default:
		return info
	}
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) != 2 {
		info.Namespace, rest = rest[1], rest[2:]
	}
	if len(rest) == 0 {
		return info
	}
	info.Resource = rest[0]
	if len(rest) > 1 {
		info.Name = rest[1]
	}
	if len(rest) > 2 {
		info.Sub = rest[2]
	}
	if info.Resource == "namespaces" && len(rest) == 2 && info.Namespace == "" {
		info.Name = rest[1]
	}
	q := r.URL.Query()
	watch := q.Get("watch") == "1" || q.Get("watch") == "true"
	switch r.Method {
	case "GET":
		switch {
		case watch:
			info.Verb = "watch"
		case info.Name == "":
			info.Verb = "list"
		default:
			info.Verb = "get"
		}
	case "POST":
		info.Verb = "create"
	case "PUT":
		info.Verb = "update"
	case "PATCH":
		info.Verb = "patch"
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch") {
			info.Verb = "apply"
		}
	case "DELETE":
		info.Verb = "delete"
		if info.Name == "" {
			info.Verb = "deletecollection"
		}
	}
	return info
}

// modifyResponse hides readiness that the config says never comes.
func (p *proxy) modifyResponse(resp *http.Response) error {
	p.mu.Lock()
	cfg := p.config
	p.mu.Unlock()
	info := resolve(resp.Request)
	var hide func(obj)
	switch {
	case cfg.NeverReadyDeployments && info.Resource == "deployments":
		hide = hideDeploymentReady
	case cfg.NeverAssignLbIP && info.Resource == "services":
		hide = func(o obj) {
			if st := child(o, "status"); st != nil {
				delete(st, "loadBalancer")
			}
		}
	case cfg.NeverReadyCertificates && info.Resource == "certificates":
		hide = func(o obj) {
			if st := child(o, "status"); st != nil {
				delete(st, "conditions")
			}
		}
	}
	if hide == nil || !strings.Contains(resp.Header.Get("Content-Type"), "json") || resp.StatusCode != 200 {
		return nil
	}
	if info.Verb == "watch" {
		pr, pw := io.Pipe()
		body := resp.Body
		go func() {
			dec := json.NewDecoder(body)
			enc := json.NewEncoder(pw)
			for {
				var ev obj
				if err := dec.Decode(&ev); err != nil {
					body.Close()
					pw.CloseWithError(err)
					return
				}
				if o := child(ev, "object"); o != nil {
					hide(o)
				}
				if err := enc.Encode(ev); err != nil {
					body.Close()
					return
				}
			}
		}()
		resp.Body = pr
		return nil
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var o obj
	if json.Unmarshal(data, &o) == nil {
		if items, ok := o["items"].([]any); ok {
			for _, it := range items {
				if it, ok := it.(obj); ok {
					hide(it)
				}
			}
		} else {
			hide(o)
		}
		data, _ = json.Marshal(o)
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	resp.ContentLength = int64(len(data))
	resp.Header.Set("Content-Length", strconv.Itoa(len(data)))
	return nil
}

func hideDeploymentReady(o obj) {
	st := child(o, "status")
	if st == nil {
		return
	}
	delete(st, "availableReplicas")
	delete(st, "readyReplicas")
	if conds, ok := st["conditions"].([]any); ok {
		for _, c := range conds {
			if c, ok := c.(obj); ok && str(c, "type") == "Available" {
				c["status"] = "False"
				c["reason"] = "MinimumReplicasUnavailable"
			}
		}
	}
}

func (p *proxy) admin(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	bad := func(err error) { reply(400, obj{"error": err.Error()}) }
	p.mu.Lock()
	defer p.mu.Unlock()
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/_admin/config" && r.Method == "GET":
		reply(200, p.config)
	case path == "/_admin/config":
		next := p.config
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&next); err != nil {
			bad(err)
			return
		}
		p.config = next
		reply(200, p.config)
	case path == "/_admin/faults" && r.Method == "GET":
		reply(200, p.faults)
	case path == "/_admin/faults" && r.Method == "POST":
		f := &fault{Nth: 1, Times: 1}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(f); err != nil {
			bad(err)
			return
		}
		if f.Status == 0 && !f.Drop && f.DelayMs == 0 && f.CutAfterMs == 0 {
			bad(fmt.Errorf("a fault needs one of status, drop, delayMs or cutAfterMs"))
			return
		}
		if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
			bad(fmt.Errorf("status %d is not an error code", f.Status))
			return
		}
		if f.Nth < 1 {
			f.Nth = 1
		}
		f.Verb = strings.ToLower(f.Verb)
		f.ID, f.Seen, f.Fired = p.nextID, 0, 0
		p.nextID++
		p.faults = append(p.faults, f)
		reply(200, obj{"id": f.ID})
	case path == "/_admin/faults" && r.Method == "DELETE":
		p.faults = nil
		reply(200, obj{})
	case path == "/_admin/requests" && r.Method == "GET":
		reply(200, p.requests)
	case path == "/_admin/requests" && r.Method == "DELETE":
		p.requests = nil
		reply(200, obj{})
	case path == "/_admin/reset" && r.Method == "POST":
		p.config, p.faults, p.requests = proxyConfig{}, nil, nil
		reply(200, obj{})
	default:
		reply(404, obj{"error": "unknown admin path " + r.Method + " " + path})
	}
}
