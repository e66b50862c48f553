package proc

import (
	"encoding/json"
	"net/http"
)

// AgentSynced reports whether the agent whose /healthz is at addr says it is connected to a
// brain and has applied a complete state. c is the client of the network the agent is in.
func AgentSynced(c *http.Client, addr string) bool {
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct{ Synced, Connected bool }
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&st) == nil && st.Synced && st.Connected
}
