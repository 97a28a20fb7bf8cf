// Inline SVG icons (stroke = currentColor), so nothing loads from anywhere.
import type { ReactElement } from "react";

function Svg({ d, size = 18 }: { d: string | string[]; size?: number }): ReactElement {
  const paths = Array.isArray(d) ? d : [d];
  return (
    <svg width={size} height={size} viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth={1.8} strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
      {paths.map((p, i) => (
        <path key={i} d={p} />
      ))}
    </svg>
  );
}

export const IconChat = () => <Svg d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z" />;
export const IconCube = () => <Svg d={["M12 2 3 7v10l9 5 9-5V7z", "M3 7l9 5 9-5", "M12 12v10"]} />;
export const IconGear = () => (
  <Svg d={["M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z", "M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z"]} />
);
export const IconPlus = () => <Svg d={["M12 5v14", "M5 12h14"]} />;
export const IconSend = () => <Svg d={["M12 19V5", "M5 12l7-7 7 7"]} />;
export const IconStop = () => <Svg d="M7 7h10v10H7z" />;
export const IconCopy = () => <Svg size={15} d={["M9 9h11v11H9z", "M5 15H4V4h11v1"]} />;
export const IconCheck = () => <Svg size={15} d="M5 12l5 5L20 7" />;
export const IconEdit = () => <Svg size={15} d={["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"]} />;
export const IconRefresh = () => <Svg size={15} d={["M21 12a9 9 0 1 1-3-6.7L21 8", "M21 3v5h-5"]} />;
export const IconTrash = () => <Svg size={15} d={["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6"]} />;
export const IconSearch = () => <Svg size={16} d={["M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z", "M21 21l-4.3-4.3"]} />;
export const IconSliders = () => <Svg d={["M4 21v-7", "M4 10V3", "M12 21v-9", "M12 8V3", "M20 21v-5", "M20 12V3", "M1 14h6", "M9 8h6", "M17 16h6"]} />;
export const IconFolder = () => <Svg d="M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z" />;
export const IconDown = () => <Svg d={["M12 5v14", "M19 12l-7 7-7-7"]} />;
export const IconX = () => <Svg size={16} d={["M18 6 6 18", "M6 6l12 12"]} />;
export const IconAlert = () => <Svg size={16} d={["M12 9v4", "M12 17h.01", "M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z"]} />;
export const IconDatabase = () => <Svg d={["M12 8c4.4 0 8-1.3 8-3s-3.6-3-8-3-8 1.3-8 3 3.6 3 8 3z", "M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5", "M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"]} />;
export const IconUpload = () => <Svg d={["M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4", "M17 8l-5-5-5 5", "M12 3v12"]} />;
export const IconDownload = () => <Svg size={15} d={["M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4", "M7 10l5 5 5-5", "M12 15V3"]} />;
export const IconUndo = () => <Svg size={15} d={["M9 14 4 9l5-5", "M4 9h11a5 5 0 0 1 0 10h-4"]} />;
export const IconSplit = () => <Svg size={15} d={["M16 3h5v5", "M8 3H3v5", "M12 22v-8.3a4 4 0 0 0-1.2-2.8L3 3", "M21 3l-7.8 7.8"]} />;
export const IconLayers = () => <Svg size={15} d={["M12 2 2 7l10 5 10-5z", "M2 17l10 5 10-5", "M2 12l10 5 10-5"]} />;
export const IconArrowUp = () => <Svg size={15} d={["M12 19V5", "M5 12l7-7 7 7"]} />;
export const IconArrowDown = () => <Svg size={15} d={["M12 5v14", "M19 12l-7 7-7-7"]} />;
