/**
 * The OpenAPI details of one operation beyond its request schemas (see
 * src/api/openapi.ts): shared by the core routes and the domains' routes
 * (Domain.operations).
 */
export type JsonSchema = Record<string, unknown>;

export interface Operation {
  operationId: string;
  tag: string;
  ok: JsonSchema | { description: string; content: Record<string, unknown> };
  errors: number[];
}

export const anyObject = (description: string): JsonSchema => ({ type: 'object', additionalProperties: true, description });
export const text = (mediaType: string, description: string) => ({ description, content: { [mediaType]: { schema: { type: 'string' } } } });
