// Package control is what guards the daemon's HTTP API: the control
// socket (created unreachable, then opened to root and one group), the
// bearer token file (private, long enough) and the check that a TCP
// request carries it from this host's own origin, and the serving of a
// handler until stop.
package control
