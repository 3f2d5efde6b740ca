package main

import "testing"

func TestNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		service, binding, segment string
	}{
		{"Counter", "COUNTER", "counter"},
		{"ChatRoom", "CHAT_ROOM", "chat-room"},
		{"HTTPProxy", "HTTP_PROXY", "http-proxy"},
		{"HTTP2Proxy", "HTTP2_PROXY", "http2-proxy"},
		{"Counter2Go", "COUNTER2_GO", "counter2-go"},
		{"S3Bucket", "S3_BUCKET", "s3-bucket"},
		{"URLShortenerV2", "URL_SHORTENER_V2", "url-shortener-v2"},
		{"IDService", "ID_SERVICE", "id-service"},
		{"userAPI", "USER_API", "user-api"},
		{"Api", "API", "api"},
		{"A", "A", "a"},
		{"ABC", "ABC", "abc"},
		{"AbcD", "ABC_D", "abc-d"},
		{"chat_room", "CHAT_ROOM", "chat-room"},
		{"Chat_Room", "CHAT_ROOM", "chat-room"},
		{"Chat__Room_", "CHAT_ROOM", "chat-room"},
		{"_Chat", "CHAT", "chat"},
		{"chat_2room", "CHAT_2ROOM", "chat-2room"},
		{"Http2server", "HTTP2SERVER", "http2server"},
		// Mixed-case acronyms split where the rules say, not where a reader
		// would; the option's binding field is the way out.
		{"OAuthToken", "O_AUTH_TOKEN", "o-auth-token"},
		{"IPv6Router", "I_PV6_ROUTER", "i-pv6-router"},
	}
	for _, tt := range tests {
		if got := constantCase(tt.service); got != tt.binding {
			t.Errorf("constantCase(%q) = %q, want %q", tt.service, got, tt.binding)
		}
		if got := kebabCase(tt.service); got != tt.segment {
			t.Errorf("kebabCase(%q) = %q, want %q", tt.service, got, tt.segment)
		}
		if !validBinding.MatchString(tt.binding) {
			t.Errorf("derived binding %q of %q is not a valid binding", tt.binding, tt.service)
		}
	}
}

func TestValidBinding(t *testing.T) {
	t.Parallel()
	for _, binding := range []string{"A", "CHAT_ROOM", "PROXY2", "A_", "X_1_Y"} {
		if !validBinding.MatchString(binding) {
			t.Errorf("binding %q is rejected", binding)
		}
	}
	for _, binding := range []string{"", "chat_room", "ChatRoom", "_CHAT", "2CHAT", "CHAT-ROOM", "CHAT ROOM", "CHAT_ROOM\n", "ÉTAT"} {
		if validBinding.MatchString(binding) {
			t.Errorf("binding %q is accepted", binding)
		}
	}
}
