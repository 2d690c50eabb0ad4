#pragma once
// The web SQL console served at GET /: one self-contained page (no external assets) that talks
// to the same HTTP API as every other client.
namespace litedrive {
extern const char* const web_console_html;
} // namespace litedrive
