/**
 * How a route renders 400/404 errors. The legacy routes `/sink`, `/source`, `/retrieve`, `/stream/*`
 * and `/unregister` answer `{"error":"<message>"}`; everything else (and every 401/403/410/429/503)
 * answers `{"error":{"message","code",...}}` (spec §3, §4); the OpenAI-compatible gateway answers
 * `{"error":{"message","type"[,"param"][,"code"]}}` (gateway.md §2.1).
 */
export type ErrorStyle = 'text' | 'object' | 'openai';
