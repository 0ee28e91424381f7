// Command deploycheck validates the deployment files in infra/ with the real
// libraries the deployed tools use, so the tests need neither Docker nor promtool:
//
//	deploycheck compose FILE[,FILE...] [ENV_FILE...]
//	                                        load the files like `docker compose -f
//	                                        FILE -f FILE... config` (compose-go: the
//	                                        Compose Specification schema, merging of
//	                                        override files, interpolation, semantics)
//	                                        and print the normalized project as JSON
//	deploycheck rules FILE...               parse and validate Prometheus rule files
//	                                        (rulefmt: what `promtool check rules` runs)
//	deploycheck promql                      read a JSON array of PromQL expressions on
//	                                        stdin; print, for each, its parse error or
//	                                        the metric selectors it contains
//
// Exit status: 0 when everything is valid, 1 when something is not (the reason is
// printed on stderr), 2 on usage errors. Built and run by tests/infra/test_deployment.py.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "compose":
		if len(os.Args) < 3 {
			usage()
		}
		err = compose(strings.Split(os.Args[2], ","), os.Args[3:])
	case "rules":
		if len(os.Args) < 3 {
			usage()
		}
		err = rules(os.Args[2:])
	case "promql":
		err = promql(os.Stdin)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: deploycheck compose FILE[,FILE...] [ENV_FILE...] | rules FILE... | promql < exprs.json")
	os.Exit(2)
}

// compose loads the files (later ones override earlier ones, as with several -f)
// with only the given env files as the interpolation environment (never the
// caller's environment), with every profile enabled so that services behind a
// profile are validated too.
func compose(files []string, envFiles []string) error {
	options, err := cli.NewProjectOptions(
		files,
		cli.WithName("cryptoviz"),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

func rules(files []string) error {
	failed := false
	for _, file := range files {
		_, errs := rulefmt.ParseFile(file, false)
		for _, e := range errs {
			failed = true
			fmt.Fprintln(os.Stderr, e)
		}
	}
	if failed {
		return fmt.Errorf("invalid rule files")
	}
	return nil
}

type matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
}

func promql(in io.Reader) error {
	var exprs []string
	if err := json.NewDecoder(in).Decode(&exprs); err != nil {
		return fmt.Errorf("stdin: a JSON array of strings expected: %w", err)
	}
	results := make([]result, 0, len(exprs))
	for _, text := range exprs {
		res := result{Selectors: []selector{}}
		expr, err := parser.ParseExpr(text)
		if err != nil {
			res.Error = err.Error()
		} else {
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					sel := selector{Matchers: []matcher{}}
					for _, m := range vs.LabelMatchers {
						if m.Name == labels.MetricName {
							if m.Type == labels.MatchEqual {
								sel.Metric = m.Value
							}
							continue
						}
						sel.Matchers = append(sel.Matchers, matcher{m.Name, m.Type.String(), m.Value})
					}
					if sel.Metric == "" {
						sel.Metric = vs.Name
					}
					res.Selectors = append(res.Selectors, sel)
				}
				return nil
			})
		}
		results = append(results, res)
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}
