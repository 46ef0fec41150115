package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestResolveNamesVerbsAndTargetsAsTheAPIServerDoes(t *testing.T) {
	cases := []struct {
		method, url, contentType string
		want                     reqInfo
	}{
		{"GET", "/api/v1/namespaces/matih-acme/services/lb", "", reqInfo{Verb: "get", Resource: "services", Namespace: "matih-acme", Name: "lb"}},
		{"GET", "/api/v1/namespaces/matih-acme/services", "", reqInfo{Verb: "list", Resource: "services", Namespace: "matih-acme"}},
		{"GET", "/apis/apps/v1/deployments?watch=true", "", reqInfo{Verb: "watch", Group: "apps", Resource: "deployments"}},
		{"PATCH", "/apis/apps/v1/namespaces/n/deployments/d", "application/apply-patch+yaml", reqInfo{Verb: "apply", Group: "apps", Resource: "deployments", Namespace: "n", Name: "d"}},
		{"PATCH", "/api/v1/namespaces/n/services/s/status", "application/merge-patch+json", reqInfo{Verb: "patch", Resource: "services", Namespace: "n", Name: "s", Sub: "status"}},
		{"DELETE", "/api/v1/namespaces/matih-acme", "", reqInfo{Verb: "delete", Resource: "namespaces", Name: "matih-acme"}},
		{"POST", "/api/v1/namespaces", "", reqInfo{Verb: "create", Resource: "namespaces"}},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.url, nil)
		r.Header.Set("Content-Type", c.contentType)
		got := resolve(r)
		got.Path = ""
		if got != c.want {
			t.Errorf("%s %s: got %+v, want %+v", c.method, c.url, got, c.want)
		}
	}
}

func TestFaultsFireFromTheNthMatchForTimesRequests(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"Deployment","status":{"availableReplicas":1,"conditions":[{"type":"Available","status":"True"}]}}`)
	}))
	defer upstream.Close()
	p := &proxy{nextID: 1}
	target, _ := url.Parse(upstream.URL)
	p.rp = newReverseProxy(target, http.DefaultTransport, p)
	admin := func(method, path, body string) int {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		return w.Code
	}
	if code := admin("POST", "/_admin/faults", `{"verb":"apply","resource":"deployments","nth":2,"status":500}`); code != 200 {
		t.Fatalf("adding a fault: %d", code)
	}
	if code := admin("POST", "/_admin/faults", `{"verb":"get"}`); code != 400 {
		t.Fatalf("a fault without an effect is refused, got %d", code)
	}
	apply := func() int {
		r := httptest.NewRequest("PATCH", "/apis/apps/v1/namespaces/n/deployments/d", nil)
		r.Header.Set("Content-Type", "application/apply-patch+yaml")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		return w.Code
	}
	if got := []int{apply(), apply(), apply()}; got[0] != 200 || got[1] != 500 || got[2] != 200 {
		t.Fatalf("the second apply fails once: %v", got)
	}
	// A Deployment read through a proxy whose config says it never gets ready shows no readiness.
	admin("PATCH", "/_admin/config", `{"neverReadyDeployments": true}`)
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest("GET", "/apis/apps/v1/namespaces/n/deployments/d", nil))
	var d obj
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	st := child(d, "status")
	if _, ok := st["availableReplicas"]; ok || str(st["conditions"].([]any)[0].(obj), "status") != "False" {
		t.Fatalf("readiness hidden: %v", st)
	}
	if code := admin("PATCH", "/_admin/config", `{"unknown": 1}`); code != 400 {
		t.Fatalf("an unknown setting is refused, got %d", code)
	}
}
