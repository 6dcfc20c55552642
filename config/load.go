package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"
)

// DefaultPath is the config file every command reads when neither
// --config nor $SYNCER_CONFIG names one and it exists: what the Debian
// package installs.
const DefaultPath = "/etc/syncer/syncer.yaml"

// Path is the config file to read: the one given (--config), else
// $SYNCER_CONFIG, else DefaultPath when it exists, else none ("").
func Path(given string) string {
	switch {
	case given != "":
		return given
	case os.Getenv("SYNCER_CONFIG") != "":
		return os.Getenv("SYNCER_CONFIG")
	}
	if _, err := os.Stat(DefaultPath); err == nil {
		return DefaultPath
	}
	return ""
}

// Load builds the effective config: defaults < the YAML file at path (if
// any; see Path) < SYNCER_* environment variables < the fields of flagged
// whose flag (the YAML key with "-" for "_") set reports as given.
func Load(path string, flagged Config, set func(flag string) bool) (Config, error) {
	c := Default()
	if path = Path(path); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&c); err != nil {
		return c, err
	}
	// Flags the user set win; copy them field by field.
	cv, fv := reflect.ValueOf(&c).Elem(), reflect.ValueOf(flagged)
	for i := range cv.NumField() {
		if !cv.Type().Field(i).IsExported() {
			continue
		}
		name := strings.ReplaceAll(cv.Type().Field(i).Tag.Get("yaml"), "_", "-")
		if set(name) {
			cv.Field(i).Set(fv.Field(i))
		}
	}
	return c, nil
}

func applyEnv(c *Config) error {
	v := reflect.ValueOf(c).Elem()
	var errs []error
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		key := v.Type().Field(i).Tag.Get("yaml")
		s, ok := os.LookupEnv("SYNCER_" + strings.ToUpper(key))
		if !ok {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(s)
		case int:
			n, err := strconv.Atoi(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not a number", strings.ToUpper(key), s))
				continue
			}
			f.SetInt(int64(n))
		case time.Duration:
			d, err := time.ParseDuration(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not a duration", strings.ToUpper(key), s))
				continue
			}
			f.SetInt(int64(d))
		case []string:
			f.Set(reflect.ValueOf(strings.Split(s, ",")))
		case bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not true or false", strings.ToUpper(key), s))
				continue
			}
			f.SetBool(b)
		case float64:
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not a number", strings.ToUpper(key), s))
				continue
			}
			f.SetFloat(x)
		}
	}
	return errors.Join(errs...)
}

// MarshalLogObject logs every setting under its YAML key. Secrets are never
// settings themselves, only the files that hold them.
func (c Config) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		key := v.Type().Field(i).Tag.Get("yaml")
		switch f := v.Field(i).Interface().(type) {
		case string:
			enc.AddString(key, f)
		case int:
			enc.AddInt(key, f)
		case bool:
			enc.AddBool(key, f)
		case float64:
			enc.AddFloat64(key, f)
		case time.Duration:
			enc.AddDuration(key, f)
		case []string:
			_ = enc.AddArray(key, zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
				for _, s := range f {
					ae.AppendString(s)
				}
				return nil
			}))
		}
	}
	return nil
}

// Flags registers a flag for every setting on fs, bound to c's fields:
// its name is the YAML key with '-' for '_', its help the field's help tag,
// its default c's value.
func Flags(fs *pflag.FlagSet, c *Config) {
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		f := v.Type().Field(i)
		name, help := strings.ReplaceAll(f.Tag.Get("yaml"), "_", "-"), f.Tag.Get("help")
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, help)
		case *int:
			fs.IntVar(p, name, *p, help)
		case *bool:
			fs.BoolVar(p, name, *p, help)
		case *float64:
			fs.Float64Var(p, name, *p, help)
		case *time.Duration:
			fs.DurationVar(p, name, *p, help)
		case *[]string:
			fs.StringSliceVar(p, name, *p, help)
		default:
			panic(fmt.Sprintf("config: no flag for %s (%T)", f.Name, p))
		}
	}
}

// Settings that a command other than the daemon reads, for its --help:
// the daemon's other flags are accepted there (a shared command line or
// environment still works) but hidden.
var (
	// TreeSettings locate the trees and the versions kept (versions, restore).
	TreeSettings = []string{"source", "dest", "state_dir", "trash", "trash_retention", "xattrs", "acls", "log_level", "log_format"}
	// ReconcileSettings are what a standalone reconcile syncs with.
	ReconcileSettings = append(slices.Clone(TreeSettings), "workers", "batch", "exclude", "shutdown_timeout", "open_file_wait",
		"rsync_path", "rsync_args", "direct_copy", "sparse", "hard_links", "ssh_identity", "ssh_port", "ssh_known_hosts",
		"rsync_password_file", "retry_backoff", "retry_max", "max_delete", "max_delete_fraction", "marker", "require_mount",
		"deep_reconcile_interval")
)

// HideFlags hides on fs every setting's flag but those of keep (YAML keys).
func HideFlags(fs *pflag.FlagSet, keep []string) {
	v := reflect.TypeOf(Config{})
	for i := range v.NumField() {
		f := v.Field(i)
		if key := f.Tag.Get("yaml"); f.IsExported() && !slices.Contains(keep, key) {
			_ = fs.MarkHidden(strings.ReplaceAll(key, "_", "-"))
		}
	}
}
