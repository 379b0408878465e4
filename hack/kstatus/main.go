// Command kstatus prints the kstatus verdict (Current, InProgress, Failed, Terminating) of
// every object it reads, computed by the real sigs.k8s.io/cli-utils kstatus library that Flux
// and `kubectl apply --wait`-style tools use. Input: YAML or JSON documents (a single object,
// several `---`-separated ones, or a `kind: List` as `kubectl get -o json` prints) from the
// files named on the command line, or standard input. Output: one JSON object per line,
// {"kind","namespace","name","status","message"}, in input order.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

// objects decodes every document of r, expanding Lists into their items (numbers as int64,
// as the apiserver's own JSON decoding gives them).
func objects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(r), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		obj, _, err := unstructured.UnstructuredJSONScheme.Decode(raw, nil, nil)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *unstructured.UnstructuredList:
			for i := range o.Items {
				out = append(out, &o.Items[i])
			}
		case *unstructured.Unstructured:
			out = append(out, o)
		default:
			return nil, fmt.Errorf("unexpected object %T", obj)
		}
	}
}

func compute(u *unstructured.Unstructured) (verdict, error) {
	res, err := status.Compute(u)
	if err != nil {
		return verdict{}, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return verdict{u.GetKind(), u.GetNamespace(), u.GetName(), res.Status.String(), res.Message}, nil
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	var objs []*unstructured.Unstructured
	readers := []io.Reader{stdin}
	if len(args) > 0 {
		readers = nil
		for _, path := range args {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			readers = append(readers, f)
		}
	}
	for _, r := range readers {
		found, err := objects(r)
		if err != nil {
			return err
		}
		objs = append(objs, found...)
	}
	enc := json.NewEncoder(stdout)
	for _, u := range objs {
		v, err := compute(u)
		if err != nil {
			return err
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
