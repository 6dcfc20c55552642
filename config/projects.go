package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/syncer/syncer"
)

// CheckProjects says whether each name in projects is a project: a
// top-level folder of the source, or of a local backup (a project removed
// from the source is still one to reconcile). A mistyped name is an error
// naming the projects there are, so that `syncer reconcile ProjZ` does not
// succeed having done nothing.
func (c *Config) CheckProjects(projects []string) error {
	if len(projects) == 0 {
		return nil
	}
	for _, p := range projects {
		if err := syncer.CheckName(p); err != nil {
			return fmt.Errorf("project: %w (want a top-level folder name)", err)
		}
	}
	known := map[string]bool{}
	roots := []string{c.Source}
	if !c.Remote() {
		roots = append(roots, c.Dest)
	}
	for _, root := range roots {
		ents, err := os.ReadDir(root)
		if err != nil {
			return fmt.Errorf("list projects: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() && !slices.Contains(c.IgnoreDest(), e.Name()) {
				known[e.Name()] = true
			}
		}
	}
	var unknown []string
	for _, p := range projects {
		if !known[p] {
			unknown = append(unknown, fmt.Sprintf("%q", p))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	slices.Sort(names)
	const most = 20
	list := strings.Join(names[:min(len(names), most)], ", ")
	if len(names) > most {
		list += fmt.Sprintf(", and %d more", len(names)-most)
	}
	if list == "" {
		list = "none"
	}
	return fmt.Errorf("no project %s in %s: projects are %s", strings.Join(unknown, ", "), strings.Join(roots, " or "), list)
}
