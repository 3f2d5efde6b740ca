package main

import (
	"regexp"
	"strings"
)

// validBinding matches the binding names an option may set.
var validBinding = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// constantCase returns the binding name derived from a service name: its
// words in upper case, joined by underscores (ChatRoom → CHAT_ROOM).
func constantCase(name string) string {
	return strings.ToUpper(strings.Join(words(name), "_"))
}

// kebabCase returns the URL segment derived from a service name: its words
// in lower case, joined by hyphens (ChatRoom → chat-room).
func kebabCase(name string) string {
	return strings.ToLower(strings.Join(words(name), "-"))
}

// words splits a protobuf identifier into words. Underscores separate words
// and are dropped. A new word also starts at an upper-case letter that
//
//   - follows a lower-case letter or a digit: ChatRoom → Chat Room,
//     Counter2Go → Counter2 Go; or
//   - follows an upper-case letter and precedes a lower-case one, which ends
//     an acronym: HTTPProxy → HTTP Proxy.
//
// Digits never start a word, so they stay with the word before them:
// HTTP2Proxy → HTTP2 Proxy, S3Bucket → S3 Bucket. Like every such rule it
// guesses wrong on mixed-case acronyms (OAuthToken → O Auth Token, IPv6 →
// I Pv6); the option's binding field overrides the binding in such cases.
func words(name string) []string {
	var words []string
	start := -1 // index where the current word starts, or -1 between words
	for i := range len(name) {
		c := name[i]
		if !isUpper(c) && !isLower(c) && !isDigit(c) {
			if start >= 0 {
				words = append(words, name[start:i])
				start = -1
			}
			continue
		}
		if start >= 0 && isUpper(c) && (!isUpper(name[i-1]) || i+1 < len(name) && isLower(name[i+1])) {
			words = append(words, name[start:i])
			start = i
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		words = append(words, name[start:])
	}
	return words
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
