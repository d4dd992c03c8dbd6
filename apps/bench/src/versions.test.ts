import { describe, expect, it } from 'vitest'
import { packageVersions } from './versions.js'

describe('packageVersions', () => {
  it('records the installed version of every package measured, none unknown', () => {
    const versions = packageVersions()
    expect(Object.keys(versions)).toContain('memjs')
    for (const [name, version] of Object.entries(versions)) {
      expect(`${name} ${version}`).toMatch(/^\S+ \d+\.\d+\.\d+/)
    }
  })
})
