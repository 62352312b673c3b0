// goyaml-parse reads a secrets file the way the Infisical CLI's
// `infisical secrets set --file=X.yaml` does, so tests can check what the launcher
// writes against the real parser instead of a Python YAML library.
//
// The CLI (packages/util/secrets.go, parseSecrets) calls gopkg.in/yaml.v3's
// yaml.Unmarshal into a map[string]interface{} and refuses any value that did not
// decode to a string with "YAML secret '<key>' must be a string"; a parse error
// becomes "failed to parse YAML file: <go-yaml error>". This program does the same
// with the same yaml.v3 (Debian's golang-gopkg-yaml.v3-dev, 3.0.1).
//
// Usage:
//
//	goyaml-parse FILE
//	    prints the secrets as one JSON object {key: value} on stdout and exits 0;
//	    on failure prints parseSecrets' error text on stderr and exits 1.
//	goyaml-parse -each FILE...
//	    parses every file on its own and prints one JSON array, one element per file:
//	    {"secrets": {...}} or {"error": "..."}; exits 0 (2 on a usage or I/O error).
//	    Lets a test check many documents with one process start.
//
// JSON is written without HTML escaping; a decoded string that is not valid UTF-8
// (which go-yaml never produces) is reported as an error rather than silently
// replaced by U+FFFD.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// parseSecrets is the YAML branch of the CLI's util.parseSecrets, unchanged in effect.
func parseSecrets(content []byte) (map[string]string, error) {
	secrets := make(map[string]string)
	var yamlData map[string]interface{}
	if err := yaml.Unmarshal(content, &yamlData); err != nil {
		return nil, fmt.Errorf("failed to parse YAML file: %v", err)
	}
	for key, value := range yamlData {
		strValue, ok := value.(string)
		if !ok {
			return nil, fmt.Errorf("YAML secret '%s' must be a string", key)
		}
		secrets[key] = strValue
	}
	for key, value := range secrets {
		if !utf8.ValidString(key) || !utf8.ValidString(value) {
			return nil, fmt.Errorf("goyaml-parse: decoded text is not valid UTF-8")
		}
	}
	return secrets, nil
}

func marshal(v interface{}) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(os.Stderr, "goyaml-parse: %v\n", err)
		os.Exit(2)
	}
	return buf.Bytes()
}

type result struct {
	Secrets *map[string]string `json:"secrets,omitempty"`
	Error   *string            `json:"error,omitempty"`
}

func main() {
	args := os.Args[1:]
	if len(args) >= 1 && args[0] == "-each" {
		results := make([]result, 0, len(args)-1)
		for _, name := range args[1:] {
			content, err := os.ReadFile(name)
			if err != nil {
				fmt.Fprintf(os.Stderr, "goyaml-parse: %v\n", err)
				os.Exit(2)
			}
			secrets, err := parseSecrets(content)
			if err != nil {
				text := err.Error()
				results = append(results, result{Error: &text})
			} else {
				results = append(results, result{Secrets: &secrets})
			}
		}
		os.Stdout.Write(marshal(results))
		return
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: goyaml-parse FILE | goyaml-parse -each FILE...")
		os.Exit(2)
	}
	content, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "goyaml-parse: %v\n", err)
		os.Exit(2)
	}
	secrets, err := parseSecrets(content)
	if err != nil {
		fmt.Fprintln(os.Stderr, err.Error())
		os.Exit(1)
	}
	os.Stdout.Write(marshal(secrets))
}
