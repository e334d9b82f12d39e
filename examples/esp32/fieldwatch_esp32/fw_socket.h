// fw_socket.h — WebSocketsClient (links2004/arduinoWebSockets) plus the two facts the
// library does not hand to the sketch.
//
// The protocol asks a device to behave differently after
//   * a refused handshake (HTTP 403: token unknown, revoked or expired, device retired):
//     back off for minutes, alert the user; and
//   * a close from the server (close codes 1000/1001/1012, 1008, 4000, 4001).
// The library only reports WStype_DISCONNECTED, with no HTTP status and no close code.
// This subclass looks at the library's protected connection state at the moment the
// connection is torn down (the virtual clientDisconnect()) and remembers:
//   * lastHttpStatus(): the status line of the handshake answer (101 after a good
//     handshake, 403 for a refused token, 0 when no HTTP answer arrived at all);
//   * closedByServer(): the last frame received was a close frame.
// The close *code* itself is read by the library and thrown away, so the sketch cannot
// tell 4001 (revoked) from 1012 (restart). It does not need to: after a 4001 the next
// handshake is refused with 403, which the sketch does see.
//
// Written against arduinoWebSockets 2.6/2.7 (WSclient_t::cCode, ::status and
// ::cWsHeaderDecode). If a later version renames them, this file is the one to adapt.
#pragma once

#include <WebSocketsClient.h>

class FieldwatchSocket : public WebSocketsClient {
 public:
  uint16_t lastHttpStatus() const { return lastHttpStatus_; }
  bool closedByServer() const { return closedByServer_; }

 protected:
  // Called by the library for every teardown (lost TCP, refused handshake, a close
  // frame from the server, our own disconnect()), before it resets the state and
  // raises WStype_DISCONNECTED. So the event handler can already read both facts.
  void clientDisconnect(WSclient_t* client) override {
    // The library may call this twice for one teardown; the second call finds the
    // socket already gone (tcp == NULL) and the state reset: keep the first reading.
    if (client->tcp != nullptr) {
      lastHttpStatus_ = client->cCode;
      closedByServer_ = client->status == WSC_CONNECTED &&
                        client->cWsHeaderDecode.opCode == WSop_close;
    }
    WebSocketsClient::clientDisconnect(client);
  }

  // On a new connection, forget the last frame of the previous one, so that a
  // connection lost before its first frame is not taken for a close by the server.
  void runCbEvent(WStype_t type, uint8_t* payload, size_t length) override {
    if (type == WStype_CONNECTED) _client.cWsHeaderDecode.opCode = WSop_text;
    WebSocketsClient::runCbEvent(type, payload, length);
  }

 private:
  uint16_t lastHttpStatus_ = 0;
  bool closedByServer_ = false;
};
