// A labelled text field on one row (label column, input column): the forms of Models' remote endpoints and
// adapter import. The label names the input for screen readers (htmlFor).
import type { InputHTMLAttributes } from "react";

export function FieldRow({ id, label, ...input }: { id: string; label: string } & InputHTMLAttributes<HTMLInputElement>) {
  return (
    <div className="endpoint-row">
      <label htmlFor={id}>{label}</label>
      <input id={id} {...input} />
    </div>
  );
}
