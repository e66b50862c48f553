package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// errOtherHost is the dialer's last word: whatever a bug upstream might build, a probe's
// connection goes to the endpoint and nowhere else.
var errOtherHost = errors.New("probe dial to an address other than the endpoint's")

// httpGetChecker returns a checker that GETs path from hostPort (the endpoint's address and port)
// and passes on 2xx or 3xx, like the kubelet's.
func httpGetChecker(a *v1.HTTPGetAction, hostPort string) (checker, error) {
	target, err := probeURL(a.GetScheme(), hostPort, a.GetPath())
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{}
	// Like kubelet probes: no certificate checks, no keep-alive, redirects are not followed. Unlike
	// http.DefaultTransport, no proxy from the environment: the request goes to the endpoint.
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes do not verify, as kubelet's do not
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr != hostPort {
					return nil, fmt.Errorf("%w: %s", errOtherHost, addr)
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return err
		}
		if req.URL.Host != hostPort || req.Host != hostPort {
			return fmt.Errorf("%w: %s", errOtherHost, req.Host)
		}
		req.Header.Set("User-Agent", "ganglion-probe")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}, nil
}

// probeURL builds the probe's URL from its parts, never by concatenation: the brain's path can
// only ever be a path and query on the endpoint, never an authority (user@host, //host) or a
// scheme that would send the request elsewhere.
func probeURL(scheme, hostPort, path string) (*url.URL, error) {
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrPathNotAllowed, path, err)
	}
	if path == "" {
		path = "/"
	}
	parsed, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrPathNotAllowed, path, err)
	}
	if parsed.Scheme != "" || parsed.Host != "" || parsed.User != nil || parsed.Opaque != "" {
		return nil, fmt.Errorf("%w: %q: names a scheme or authority", ErrPathNotAllowed, path)
	}
	u := &url.URL{Scheme: "http", Host: hostPort, Path: parsed.Path, RawPath: parsed.RawPath, RawQuery: parsed.RawQuery}
	if strings.EqualFold(scheme, "https") {
		u.Scheme = "https"
	}
	return u, nil
}

// checkPath accepts a plain absolute path with an optional query; empty means "/". Starting with
// "/" leaves no room for a scheme or a user@host before the path.
func checkPath(path string) error {
	switch {
	case path == "":
		return nil
	case strings.IndexFunc(path, unicode.IsControl) >= 0:
		return errors.New("has a control character")
	case !strings.HasPrefix(path, "/"):
		return errors.New(`does not start with "/"`)
	case strings.HasPrefix(path, "//"):
		return errors.New(`starts with "//", which names a host`)
	case strings.ContainsRune(path, '#'):
		return errors.New("has a fragment")
	}
	return nil
}
