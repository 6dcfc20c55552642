// Package metrics is the daemon's Prometheus registry: the counters and
// histograms the components' callbacks feed (jobs, runs, results,
// reconciles, the bottleneck), and collectors that read the queue and the
// watcher at scrape time.
package metrics
