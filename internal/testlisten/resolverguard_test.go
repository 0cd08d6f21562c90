package testlisten

// No test may resolve a name through the system resolver (internal/testguard).
import _ "github.com/connprobe/connprobe/internal/testguard"
