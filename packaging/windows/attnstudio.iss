; Inno Setup script for the Windows installer (built by .github/workflows/release.yml; untested here).
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppName=attnstudio
AppVersion={#AppVersion}
DefaultDirName={autopf}\attnstudio
DefaultGroupName=attnstudio
OutputDir=..\..\dist
OutputBaseFilename=attnstudio-setup-{#AppVersion}
Compression=lzma2
SolidCompression=yes

[Files]
Source: "..\..\dist\attnstudio\*"; DestDir: "{app}"; Flags: recursesubdirs

[Icons]
Name: "{group}\attnstudio"; Filename: "{app}\attnstudio.exe"
Name: "{autodesktop}\attnstudio"; Filename: "{app}\attnstudio.exe"; Tasks: desktopicon

[Tasks]
Name: desktopicon; Description: "Create a desktop icon"
