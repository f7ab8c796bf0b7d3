package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ListenAddr resolves a --metrics address: a bare ":PORT" (or "PORT")
// means 127.0.0.1:PORT, so that the endpoint is not open to the network
// unless a host is given ("0.0.0.0:9877", "[::]:9877", "10.0.0.5:9877").
func ListenAddr(addr string) (string, error) {
	if addr != "" && addr[0] != '[' && !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--metrics %q: want HOST:PORT or :PORT (%w)", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("--metrics %q: the port must be a number 0-65535", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Server serves /metrics for an Exporter.
type Server struct {
	srv *http.Server
	// done receives the error that stopped serving, if any.
	done chan error
}

// Listen binds the --metrics address now, so that a port in use is an
// error before tracing starts, not a silent failure later.
func Listen(addr string) (net.Listener, error) {
	a, err := ListenAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("--metrics %s: the port is in use (another tcptrace or exporter?): pick another port", a)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("--metrics %s: no such local address: give one of this host's addresses, or 0.0.0.0", a)
	case err != nil:
		return nil, fmt.Errorf("--metrics %s: %w", a, err)
	}
	return ln, nil
}

// Registry returns a registry with x and the Go runtime and process
// collectors (go_*, process_*: memory, goroutines, file descriptors), so
// that a long-running tcptrace can be watched for leaks of its own.
func Registry(x *Exporter) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(x, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Serve starts serving reg on ln: /metrics, and a pointer to it on /.
func Serve(ln net.Listener, reg *prometheus.Registry) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "tcptrace: metrics at /metrics")
	})
	s := &Server{done: make(chan error, 1),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s
}

// Close stops serving, letting scrapes in flight finish (up to 2 s).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("stopping the metrics server: %w", err)
	}
	return nil
}
